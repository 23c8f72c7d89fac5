use super::*;

/// Random walks over conversations the sender accepts: the receiver must always accept too,
/// and both sides must agree on phase, credit and body/response flags (the fuzz target checks
/// the same on arbitrary frame sequences).
#[test]
fn sessions_agree_in_lockstep() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut steps = [0u32; 14];
    for _ in 0..300 {
        let mut l = Link::new();
        for _ in 0..60 {
            // Pick a frame the sender accepts (or give up on this connection).
            let picked = (0..50).find_map(|_| {
                let kind = FrameType::ALL[rand(14) as usize];
                let n = rand(40);
                let frame = match kind {
                    FrameType::Hello => hello(),
                    FrameType::HelloAck => Frame::HelloAck(HelloAck { pid: 1, generation: n }),
                    FrameType::Reject => Frame::Reject(Reject {
                        code: RejectCode(n as u16),
                        message: "r".into(),
                    }),
                    FrameType::RequestHead => request(if n % 2 == 0 { None } else { Some(n) }),
                    FrameType::Ready => Frame::Ready,
                    FrameType::Credit => Frame::Credit(n as u32),
                    FrameType::Body => Frame::Body(vec![0; n as usize % 8]),
                    FrameType::BodyEnd => Frame::BodyEnd,
                    FrameType::ResponseHead => head(200 + n as u16),
                    FrameType::ResponseBody => Frame::ResponseBody(vec![1; n as usize]),
                    FrameType::File => Frame::File(FileSegment { offset: n, length: n }),
                    FrameType::ResponseEnd => Frame::ResponseEnd,
                    // Rare, or every walk ends early.
                    FrameType::Abort if n == 0 => abort(AbortCode::INTERNAL),
                    FrameType::Abort => return None,
                    FrameType::Log => log("l"),
                };
                let from_client = if kind == FrameType::Abort {
                    n % 2 == 0
                } else {
                    kind.sent_by_client()
                };
                let ok = if from_client {
                    l.client.clone().on_send(&frame).is_ok()
                } else {
                    l.daemon.clone().on_send(&frame).is_ok()
                };
                ok.then_some((frame, from_client))
            });
            let Some((frame, from_client)) = picked else { break };
            steps[FrameType::ALL.iter().position(|t| *t == frame.frame_type()).unwrap()] += 1;
            if from_client {
                l.c(frame).unwrap();
            } else {
                l.d(frame).unwrap();
            }
            let pair = (l.client.phase(), l.daemon.phase());
            assert!(
                matches!(
                    pair,
                    (ClientPhase::Handshake, DaemonPhase::HelloReceived)
                        | (ClientPhase::Idle, DaemonPhase::Idle)
                        | (ClientPhase::AwaitingReady, DaemonPhase::HeadReceived)
                        | (ClientPhase::AwaitingHead | ClientPhase::Streaming, DaemonPhase::Active)
                        | (ClientPhase::Finishing, DaemonPhase::Draining)
                        | (ClientPhase::Closed, DaemonPhase::Closed)
                ),
                "{pair:?}"
            );
            if pair.1 == DaemonPhase::Active {
                assert_eq!(l.client.response_started(), l.daemon.response_started());
                assert_eq!(l.client.body_ended(), l.daemon.body_ended());
                assert_eq!(l.client.credit(), l.daemon.outstanding_credit());
                assert_eq!(l.client.body_sent(), l.daemon.body_received());
            }
        }
    }
    // Every frame type was exercised.
    assert!(steps.iter().all(|&n| n > 0), "{steps:?}");
}
