//! Fuzzes the daemon wire protocol decoder and sessions.
//!
//! Input: `[limits selector u8][split seed u32][stream bytes ...]`. The stream is decoded twice,
//! in one piece and fed in pseudo-random pieces (1 byte up to the rest), and checked that:
//! * nothing panics and both ways give the same frames and the same error;
//! * every decoded frame re-encodes to exactly the bytes it came from, and decodes back;
//! * fed to a client and a daemon session in lockstep (each frame sent by its side, received by
//!   the other), the two sessions agree: whatever one side may send, the other accepts, and
//!   their phases, credit and body/response flags stay in step.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports)]
#[path = "../../src/daemon/protocol/mod.rs"]
mod protocol;

use protocol::{ClientPhase, ClientSession, DaemonPhase, DaemonSession, Decoder, Frame, FrameType, Limits};

const SMALL: Limits = Limits {
    max_frame_len: 300,
    max_control_len: 40,
    max_response_head_len: 100,
    max_request_items: 5,
    max_response_headers: 3,
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let limits = match data[0] % 3 {
        0 => Limits::DEFAULT,
        1 => SMALL,
        _ => Limits::UNLIMITED,
    };
    let seed = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
    let stream = &data[5..];

    let (whole_frames, whole_err) = decode_whole(stream, limits);
    let (split_frames, split_err) = decode_split(stream, limits, seed);
    assert_eq!(whole_frames, split_frames);
    assert_eq!(whole_err, split_err);

    lockstep(&split_frames, seed);
});

fn decode_whole(stream: &[u8], limits: Limits) -> (Vec<Frame>, Option<String>) {
    let mut dec = Decoder::with_limits(limits);
    dec.feed(stream);
    let mut frames = Vec::new();
    loop {
        match dec.next_frame() {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, dec.finish().err().map(|e| e.to_string())),
            Err(e) => {
                // Errors are reported again, not consumed.
                assert_eq!(dec.next_frame().err().map(|e| e.to_string()), Some(e.to_string()));
                return (frames, Some(e.to_string()));
            }
        }
    }
}

fn decode_split(stream: &[u8], limits: Limits, mut seed: u32) -> (Vec<Frame>, Option<String>) {
    let mut dec = Decoder::with_limits(limits);
    let mut frames = Vec::new();
    let (mut fed, mut end) = (0usize, 0usize);
    seed |= 1;
    while fed < stream.len() {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let left = stream.len() - fed;
        let n = match seed % 4 {
            0 => 1,
            1 => (seed >> 8) as usize % 16 + 1,
            2 => (seed >> 8) as usize % 1024 + 1,
            _ => left,
        }
        .min(left);
        dec.feed(&stream[fed..fed + n]);
        fed += n;
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    let new_end = fed - dec.buffered();
                    let bytes = frame.to_bytes().expect("a decoded frame encodes");
                    assert_eq!(&bytes[..], &stream[end..new_end], "canonical re-encoding");
                    let mut again = Decoder::with_limits(limits);
                    again.feed(&bytes);
                    assert_eq!(again.next_frame().expect("re-decodes").as_ref(), Some(&frame));
                    end = new_end;
                    frames.push(frame);
                }
                Ok(None) => {
                    assert!(dec.missing().expect("header already checked") > 0);
                    break;
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    return (frames, Some(e.to_string()));
                }
            }
        }
    }
    (frames, dec.finish().err().map(|e| e.to_string()))
}

/// Phases that correspond between the two sides when they have seen the same frames.
fn in_step(c: ClientPhase, d: DaemonPhase) -> bool {
    matches!(
        (c, d),
        (ClientPhase::Start, DaemonPhase::AwaitingHello)
            | (ClientPhase::Handshake, DaemonPhase::HelloReceived)
            | (ClientPhase::Idle, DaemonPhase::Idle)
            | (ClientPhase::AwaitingReady, DaemonPhase::HeadReceived)
            | (ClientPhase::AwaitingHead | ClientPhase::Streaming, DaemonPhase::Active)
            | (ClientPhase::Finishing, DaemonPhase::Draining)
            | (ClientPhase::Closed, DaemonPhase::Closed)
    )
}

fn lockstep(frames: &[Frame], seed: u32) {
    let mut client = ClientSession::new();
    let mut daemon = DaemonSession::new();
    for (i, frame) in frames.iter().enumerate() {
        let kind = frame.frame_type();
        // ABORT goes either way; the seed picks.
        let from_client = if kind == FrameType::Abort {
            (seed >> (i % 32)) & 1 == 1
        } else {
            kind.sent_by_client()
        };
        let (sent, received) = if from_client {
            (client.on_send(frame), daemon.on_recv(frame))
        } else {
            (daemon.on_send(frame), client.on_recv(frame))
        };
        if let Err(e) = sent {
            // The sender refused: the connection is dropped, nothing more to compare.
            assert!(!e.to_string().is_empty());
            return;
        }
        if let Err(e) = received {
            panic!("{kind} accepted by its sender but refused by the receiver: {e}");
        }
        assert!(
            in_step(client.phase(), daemon.phase()),
            "{:?} vs {:?}",
            client.phase(),
            daemon.phase()
        );
        if daemon.phase() == DaemonPhase::Active {
            assert_eq!(client.response_started(), daemon.response_started());
            assert_eq!(client.body_ended(), daemon.body_ended());
            assert_eq!(client.credit(), daemon.outstanding_credit());
            assert_eq!(client.body_sent(), daemon.body_received());
        }
    }
    // EOF handling must not panic in any phase.
    let _ = client.on_eof();
    let _ = daemon.on_eof();
}
