//! grpc.health.v1.Health: etcd registers the standard health service and
//! reports the whole server ("") as SERVING; any other service name is
//! unknown, as grpc-go's health server answers.

use tonic::{Request, Response, Status};

use super::proto::grpc::health::v1 as pb;

/// The service name that stands for the whole server.
pub const WHOLE_SERVER: &str = "";

/// grpc.health.v1.Health.
#[derive(Clone, Copy, Debug, Default)]
pub struct HealthService;

#[tonic::async_trait]
impl pb::health_server::Health for HealthService {
    async fn check(
        &self,
        request: Request<pb::HealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckResponse>, Status> {
        if request.get_ref().service != WHOLE_SERVER {
            return Err(Status::not_found("unknown service"));
        }
        Ok(Response::new(pb::HealthCheckResponse {
            status: pb::health_check_response::ServingStatus::Serving as i32,
        }))
    }
}
