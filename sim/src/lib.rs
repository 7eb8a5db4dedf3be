//! cairn-sim: runs the production node driver under madsim with faults and checkers.
