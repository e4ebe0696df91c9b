//! A focus API client with bearer auth, for cluster tests.

use std::net::SocketAddr;

use tern_proto::focus::v1 as fpb;

pub type AuthFn =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;
pub type Api = fpb::focus_client::FocusClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AuthFn>,
>;

/// A focus API client sending `Bearer secret`.
pub async fn api(grpc: SocketAddr, secret: &str) -> Api {
    try_api(grpc, secret).await.expect("connect to focus")
}

/// [`api`], for a focus that may be down.
pub async fn try_api(grpc: SocketAddr, secret: &str) -> Result<Api, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .expect("endpoint")
        .connect()
        .await?;
    let bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {secret}").parse().expect("header");
    let f: AuthFn = Box::new(move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", bearer.clone());
        Ok(r)
    });
    Ok(fpb::focus_client::FocusClient::with_interceptor(channel, f))
}
