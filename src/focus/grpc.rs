//! gRPC services of the focus.

use std::pin::Pin;
use std::time::Duration;

use tern_focus::{BridgeState, BridgeView, MixLayout, MixedVideo, Registration, Report};
use tern_proto::bridge::v1 as bpb;
use tern_proto::focus::v1 as fpb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use super::handle::{FocusHandle, RecordingOp, Req, status};
use super::limits::GrpcLimits;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// How long a bridge may take to send `register` after opening the stream.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

pub fn bridge_pb(v: &BridgeView) -> fpb::Bridge {
    fpb::Bridge {
        id: v.reg.id.clone(),
        region: v.reg.region.clone(),
        version: v.reg.version.clone(),
        api_version: v.reg.api_version,
        state: match v.state {
            BridgeState::Operational => fpb::BridgeState::Operational,
            BridgeState::Draining => fpb::BridgeState::Draining,
            BridgeState::ShuttingDown => fpb::BridgeState::ShuttingDown,
            BridgeState::Failed => fpb::BridgeState::Failed,
        } as i32,
        online: v.online,
        stress: v.stress,
        corrected_stress: v.corrected_stress,
        conferences: v.conferences as u32,
        endpoints: v.endpoints,
        signal_url: v.reg.signal_url.clone(),
        relay_addr: v.reg.relay_addr.clone(),
        last_failure: v.last_failure.clone().unwrap_or_default(),
        last_report_ms: v.since_report.as_millis() as u64,
    }
}

/// Constant-time comparison, so a secret cannot be guessed byte by byte from
/// response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_bearer<T>(req: &Request<T>, secret: &str) -> Result<(), Status> {
    let Some(v) = req.metadata().get("authorization") else {
        return Err(Status::unauthenticated(
            "missing `authorization: Bearer <api secret>`",
        ));
    };
    let v = v
        .to_str()
        .map_err(|_| Status::unauthenticated("authorization header is not ASCII"))?;
    let token = v
        .strip_prefix("Bearer ")
        .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <api secret>`"))?;
    if same(token.as_bytes(), secret.as_bytes()) {
        Ok(())
    } else {
        Err(Status::unauthenticated("wrong API secret"))
    }
}

pub struct FocusApi(pub FocusHandle);

impl FocusApi {
    async fn set_drain(
        &self,
        req: Request<fpb::DrainBridgeRequest>,
        on: bool,
    ) -> Result<Response<fpb::Bridge>, Status> {
        check_bearer(&req, &self.0.api_secret)?;
        let id = req.into_inner().bridge_id;
        let v = self
            .0
            .ask(|reply| Req::Drain { id, on, reply })
            .await?
            .map_err(status)?;
        Ok(Response::new(bridge_pb(&v)))
    }
}

#[tonic::async_trait]
impl fpb::focus_server::Focus for FocusApi {
    async fn allocate(
        &self,
        req: Request<fpb::AllocateRequest>,
    ) -> Result<Response<fpb::AllocateResponse>, Status> {
        check_bearer(&req, &self.0.api_secret)?;
        let r = req.into_inner();
        let role = match fpb::Role::try_from(r.role) {
            Ok(fpb::Role::Unspecified) => fpb::Role::Participant,
            Ok(role) => role,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "role {} is not ROLE_UNSPECIFIED, ROLE_PARTICIPANT, ROLE_VIEWER or ROLE_MODERATOR",
                    r.role
                )));
            }
        };
        let mode = conference_mode(r.options.as_ref())?;
        let resp = allocate(
            &self.0,
            r.conference,
            r.participant,
            r.display_name,
            r.region,
            &r.video_codec,
            role,
            mode,
        )
        .await?;
        Ok(Response::new(resp))
    }

    async fn end_conference(
        &self,
        req: Request<fpb::EndConferenceRequest>,
    ) -> Result<Response<fpb::EndConferenceResponse>, Status> {
        check_bearer(&req, &self.0.api_secret)?;
        let conference = req.into_inner().conference;
        let n = self
            .0
            .ask(|reply| Req::End { conference, reply })
            .await?
            .map_err(status)?;
        Ok(Response::new(fpb::EndConferenceResponse {
            participants_removed: n as u32,
        }))
    }

    async fn start_recording(
        &self,
        req: Request<fpb::StartRecordingRequest>,
    ) -> Result<Response<fpb::RecordingInfo>, Status> {
        check_bearer(&req, &self.0.api_secret)?;
        let conference = req.into_inner().conference;
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.recording(RecordingOp::Start {
            conference,
            unix_ms,
        })
        .await
    }

    async fn stop_recording(
        &self,
        req: Request<fpb::StopRecordingRequest>,
    ) -> Result<Response<fpb::RecordingInfo>, Status> {
        check_bearer(&req, &self.0.api_secret)?;
        let conference = req.into_inner().conference;
        self.recording(RecordingOp::Stop { conference }).await
    }

    async fn list_recordings(
        &self,
        req: Request<fpb::ListRecordingsRequest>,
    ) -> Result<Response<fpb::ListRecordingsResponse>, Status> {
        check_bearer(&req, &self.0.api_secret)?;
        let c = req.into_inner().conference;
        let views = self
            .0
            .ask(|reply| Req::Recording {
                op: RecordingOp::List {
                    conference: (!c.is_empty()).then_some(c),
                },
                reply,
            })
            .await?
            .map_err(status)?;
        Ok(Response::new(fpb::ListRecordingsResponse {
            recordings: views.iter().map(recording_pb).collect(),
        }))
    }

    async fn get_conference(
        &self,
        req: Request<fpb::GetConferenceRequest>,
    ) -> Result<Response<fpb::Conference>, Status> {
        check_bearer(&req, &self.0.api_secret)?;
        let name = req.into_inner().conference;
        let n2 = name.clone();
        let c = self
            .0
            .ask(|reply| Req::Conference { name: n2, reply })
            .await?
            .ok_or_else(|| Status::not_found(format!("unknown conference {name}")))?;
        Ok(Response::new(fpb::Conference {
            name,
            bridges: c
                .into_iter()
                .map(|(bridge_id, ps)| fpb::ConferenceBridge {
                    bridge_id,
                    participants: ps.into_iter().collect(),
                })
                .collect(),
        }))
    }

    async fn list_bridges(
        &self,
        req: Request<fpb::ListBridgesRequest>,
    ) -> Result<Response<fpb::ListBridgesResponse>, Status> {
        check_bearer(&req, &self.0.api_secret)?;
        let views = self.0.ask(|reply| Req::Bridges { reply }).await?;
        Ok(Response::new(fpb::ListBridgesResponse {
            bridges: views.iter().map(bridge_pb).collect(),
        }))
    }

    async fn drain_bridge(
        &self,
        req: Request<fpb::DrainBridgeRequest>,
    ) -> Result<Response<fpb::Bridge>, Status> {
        self.set_drain(req, true).await
    }

    async fn undrain_bridge(
        &self,
        req: Request<fpb::DrainBridgeRequest>,
    ) -> Result<Response<fpb::Bridge>, Status> {
        self.set_drain(req, false).await
    }

    type WatchStream = BoxStream<fpb::ClusterEvent>;

    async fn watch(
        &self,
        req: Request<fpb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        check_bearer(&req, &self.0.api_secret)?;
        let rx = self.0.events.subscribe();
        let s = tokio_stream::StreamExt::filter_map(BroadcastStream::new(rx), |e| match e {
            Ok(e) => Some(Ok(e)),
            // A slow watcher misses events rather than slowing the focus.
            Err(_) => Some(Err(Status::data_loss(
                "watcher fell behind; events were dropped",
            ))),
        });
        Ok(Response::new(Box::pin(s)))
    }
}

/// The mode an Allocate's options ask for (`None`: the conference's).
fn conference_mode(
    options: Option<&fpb::ConferenceOptions>,
) -> Result<Option<tern_focus::ConferenceMode>, Status> {
    let Some(o) = options else { return Ok(None) };
    let mode = fpb::ConferenceMode::try_from(o.mode).map_err(|_| {
        Status::invalid_argument(format!(
            "options.mode {} is not CONFERENCE_MODE_UNSPECIFIED, CONFERENCE_MODE_FORWARDING or CONFERENCE_MODE_MIXED",
            o.mode
        ))
    })?;
    let mixed_only = o.audio_sample_rate != 0
        || o.video_layout != 0
        || o.video_width != 0
        || o.video_height != 0;
    match mode {
        fpb::ConferenceMode::Unspecified | fpb::ConferenceMode::Forwarding if mixed_only => {
            Err(Status::invalid_argument(
                "options.audio_sample_rate, video_layout, video_width and video_height are for CONFERENCE_MODE_MIXED only",
            ))
        }
        fpb::ConferenceMode::Unspecified => Ok(None),
        fpb::ConferenceMode::Forwarding => Ok(Some(tern_focus::ConferenceMode::Forwarding)),
        fpb::ConferenceMode::Mixed => {
            let layout = match fpb::VideoLayout::try_from(o.video_layout) {
                Ok(fpb::VideoLayout::Unspecified | fpb::VideoLayout::Grid) => MixLayout::Grid,
                Ok(fpb::VideoLayout::Speaker) => MixLayout::Speaker,
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "options.video_layout {} is not VIDEO_LAYOUT_UNSPECIFIED, VIDEO_LAYOUT_GRID or VIDEO_LAYOUT_SPEAKER",
                        o.video_layout
                    )));
                }
            };
            let video = MixedVideo {
                layout,
                width: o.video_width,
                height: o.video_height,
            };
            Ok(Some(mixed_mode(o.audio_sample_rate, video)?))
        }
    }
}

/// A mixed conference at `rate` Hz (0: the default, 16 kHz) with a
/// composite as `video` says (the focus checks its size).
pub fn mixed_mode(rate: u32, video: MixedVideo) -> Result<tern_focus::ConferenceMode, Status> {
    let sample_rate = if rate == 0 { 16_000 } else { rate };
    if !tern_mixer::SAMPLE_RATES.contains(&sample_rate) {
        return Err(Status::invalid_argument(format!(
            "options.audio_sample_rate {rate} is not 8000, 12000, 16000, 24000, 48000 or 0 (16000)"
        )));
    }
    Ok(tern_focus::ConferenceMode::Mixed { sample_rate, video })
}

/// Allocation shared by gRPC and the HTTP `/join` endpoint. A viewer's
/// token may not publish; a moderator's may also start and stop recording.
#[allow(clippy::too_many_arguments)]
pub async fn allocate(
    h: &FocusHandle,
    conference: String,
    participant: String,
    name: String,
    region: String,
    video_codec: &str,
    role: fpb::Role,
    mode: Option<tern_focus::ConferenceMode>,
) -> Result<fpb::AllocateResponse, Status> {
    let started = std::time::Instant::now();
    if !video_codec.is_empty() && tern_sfu::CodecName::video_from_name(video_codec).is_none() {
        super::metrics::allocation(started.elapsed(), Some("invalid"));
        return Err(Status::invalid_argument(format!(
            "video_codec {video_codec:?} is not one of \"vp8\", \"vp9\", \"h264\", \"av1\" or empty (any)"
        )));
    }
    let (c, p) = (conference.clone(), participant.clone());
    let placed = h
        .ask(|reply| Req::Allocate {
            conference: c,
            participant: p,
            region,
            video_codec: video_codec.to_string(),
            mode,
            reply,
        })
        .await;
    let placement = match placed {
        Ok(Ok(p)) => {
            super::metrics::allocation(started.elapsed(), None);
            p
        }
        Ok(Err(e)) => {
            super::metrics::allocation(started.elapsed(), Some(super::metrics::failure_reason(&e)));
            return Err(status(e));
        }
        Err(s) => {
            super::metrics::allocation(started.elapsed(), Some("unavailable"));
            return Err(s);
        }
    };
    let name = if name.is_empty() {
        participant.clone()
    } else {
        name
    };
    let token = h.keys.mint_claims(&crate::auth::Claims {
        room: conference.clone(),
        sub: participant.clone(),
        name: Some(name),
        exp: crate::auth::unix_now() + h.token_ttl,
        codec: placement.video_codec.clone(),
        publish: (role == fpb::Role::Viewer).then_some(false),
        moderator: (role == fpb::Role::Moderator).then_some(true),
        mix: placement.mode.mix_rate(),
        mix_video: placement
            .mode
            .mixed_video()
            .filter(|v| *v != MixedVideo::default())
            .map(|v| crate::auth::MixVideoClaim {
                layout: v.layout.as_str().to_string(),
                width: v.width,
                height: v.height,
            }),
    });
    // The token's own checks (room and id characters) apply here too.
    h.keys
        .verify(&token)
        .map_err(|r| Status::invalid_argument(r.message))?;
    let ice_servers = crate::auth::turn_credentials(&h.turn, &participant, crate::auth::unix_now())
        .into_iter()
        .map(|s| fpb::IceServer {
            urls: s.urls,
            username: s.username,
            credential: s.credential,
        })
        .collect();
    Ok(fpb::AllocateResponse {
        bridge_id: placement.bridge_id,
        region: placement.region,
        signal_url: placement.signal_url,
        token,
        ice_servers,
    })
}

pub struct BridgeControl(pub FocusHandle);

#[tonic::async_trait]
impl bpb::bridge_control_server::BridgeControl for BridgeControl {
    type AttachStream = ReceiverStream<Result<bpb::FocusCommand, Status>>;

    async fn attach(
        &self,
        req: Request<Streaming<bpb::BridgeMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let secret = req
            .metadata()
            .get("x-tern-bridge-secret")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if !same(secret.as_bytes(), self.0.bridge_secret.as_bytes()) {
            warn!("bridge refused: wrong or missing bridge secret");
            return Err(Status::unauthenticated(
                "wrong or missing x-tern-bridge-secret",
            ));
        }
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no register message within 5 s"))??;
        let Some(bpb::BridgeMessage {
            msg: Some(bpb::bridge_message::Msg::Register(r)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message must be `register`",
            ));
        };
        let reg = Registration::from(r);
        let id = reg.id.clone();
        let (tx, rx) = mpsc::channel(64);
        let session = self
            .0
            .ask(|reply| Req::Register {
                reg,
                commands: tx.clone(),
                reply,
            })
            .await?
            .map_err(status)?;
        info!(bridge = %id, session, "bridge attached");
        let _ = tx
            .send(Ok(bpb::FocusCommand {
                cmd: Some(bpb::focus_command::Cmd::Registered(bpb::Registered {
                    focus_id: self.0.focus_id.clone(),
                })),
            }))
            .await;
        let focus = self.0.tx.clone();
        tokio::spawn(async move {
            let reason = loop {
                match inbound.message().await {
                    Ok(Some(bpb::BridgeMessage {
                        msg: Some(bpb::bridge_message::Msg::Stats(s)),
                    })) => {
                        let report = Report::from(s);
                        if focus
                            .send(Req::Report {
                                id: id.clone(),
                                session,
                                report,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(Some(_)) => {
                        warn!(bridge = %id, "unexpected message after register; ignored");
                    }
                    Ok(None) => break "stream ended".to_string(),
                    Err(e) => break e.message().to_string(),
                }
            };
            let _ = focus
                .send(Req::Disconnect {
                    id,
                    session,
                    reason,
                })
                .await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Serve every service behind the per-peer-address limit (limits.rs): it
/// sees each call before a handler checks its secret.
pub async fn serve(
    h: FocusHandle,
    listener: tokio::net::TcpListener,
    limits: GrpcLimits,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<fpb::focus_server::FocusServer<FocusApi>>()
        .await;
    tonic::transport::Server::builder()
        .layer(tonic::service::InterceptorLayer::new(limits))
        .add_service(health)
        .add_service(fpb::focus_server::FocusServer::new(FocusApi(h.clone())))
        .add_service(bpb::bridge_control_server::BridgeControlServer::new(
            BridgeControl(h),
        ))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}

impl FocusApi {
    /// Start or stop: the one recording it concerns.
    async fn recording(&self, op: RecordingOp) -> Result<Response<fpb::RecordingInfo>, Status> {
        let views = self
            .0
            .ask(|reply| Req::Recording { op, reply })
            .await?
            .map_err(status)?;
        views
            .first()
            .map(|v| Response::new(recording_pb(v)))
            .ok_or_else(|| Status::internal("no recording in the focus's answer"))
    }
}

pub fn recording_pb(v: &tern_focus::RecordingView) -> fpb::RecordingInfo {
    use tern_focus::RecordingState as S;
    fpb::RecordingInfo {
        recording_id: v.id.clone(),
        conference: v.conference.clone(),
        bridge_id: v.bridge.clone(),
        state: match v.state {
            S::Active => fpb::RecordingState::Active,
            S::Stopped => fpb::RecordingState::Stopped,
            S::Failed => fpb::RecordingState::Failed,
        } as i32,
        started_unix_ms: v.started_unix_ms,
        ended_unix_ms: v.ended_unix_ms.unwrap_or(0),
        error: v.error.clone().unwrap_or_default(),
        files: v.files,
        bytes: v.bytes,
        continues: v.continues.clone().unwrap_or_default(),
    }
}
