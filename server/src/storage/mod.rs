//! The write-ahead log and snapshot files, behind the [`Disk`] seam the simulator replaces.
