use std::io::{self, Cursor, Read, Write};

use super::*;

#[test]
fn sample_covers_every_frame_type() {
    let types: Vec<FrameType> = sample_frames().iter().map(Frame::frame_type).collect();
    assert_eq!(types, FrameType::ALL.to_vec());
    for t in FrameType::ALL {
        assert_eq!(FrameType::from_u8(t.code()), Some(t));
        assert!(t.sent_by_client() || t.sent_by_daemon(), "{t}");
        assert_eq!(t.sent_by_client() && t.sent_by_daemon(), t == FrameType::Abort, "{t}");
    }
    assert_eq!(FrameType::from_u8(0x7f), None);
    assert_eq!(FrameType::ResponseHead.to_string(), "RESPONSE_HEAD");
}

#[test]
fn round_trip_every_frame_type() {
    for frame in sample_frames() {
        let bytes = frame.to_bytes().unwrap();
        assert_eq!(bytes[0], frame.frame_type().code());
        assert_eq!(
            u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize,
            bytes.len() - HEADER_LEN
        );
        let mut dec = Decoder::new();
        dec.feed(&bytes);
        assert_eq!(dec.next_frame().unwrap().as_ref(), Some(&frame));
        assert_eq!(dec.buffered(), 0);
        assert!(dec.next_frame().unwrap().is_none());
        dec.finish().unwrap();
    }
}

#[test]
fn round_trip_edge_values() {
    let frames = vec![
        Frame::Hello(Hello {
            generation: 0,
            token: Vec::new(),
        }),
        Frame::Reject(Reject {
            code: RejectCode(999),
            message: String::new(),
        }),
        Frame::RequestHead(RequestHead::default()),
        Frame::RequestHead(RequestHead {
            content_length: Some(0),
            ..RequestHead::default()
        }),
        Frame::RequestHead(RequestHead {
            content_length: Some(u64::MAX),
            ..RequestHead::default()
        }),
        Frame::Credit(0),
        Frame::Credit(u32::MAX),
        Frame::Body(Vec::new()),
        Frame::ResponseHead(ResponseHead {
            status: 100,
            reason: Vec::new(),
            headers: Vec::new(),
        }),
        Frame::ResponseHead(ResponseHead {
            status: 999,
            reason: b"X".to_vec(),
            headers: vec![(vec![], vec![])],
        }),
        Frame::ResponseBody(Vec::new()),
        Frame::File(FileSegment {
            offset: u64::MAX,
            length: 0,
        }),
        Frame::Abort(Abort {
            code: AbortCode(0),
            message: "x".into(),
        }),
        Frame::Log(Log {
            level: LogLevel::Debug,
            message: String::new(),
        }),
        Frame::Log(Log {
            level: LogLevel::Emerg,
            message: "\u{0}\u{10ffff}".into(),
        }),
    ];
    let bytes = encode_all(&frames);
    let mut dec = Decoder::new();
    dec.feed(&bytes);
    assert_eq!(drain(&mut dec), frames);
}

#[test]
fn encoding_is_canonical() {
    // Every decoded frame re-encodes to exactly the bytes it was decoded from.
    for frame in sample_frames() {
        let bytes = frame.to_bytes().unwrap();
        let decoded = decode_one(&bytes, Limits::DEFAULT).unwrap().unwrap();
        assert_eq!(decoded.to_bytes().unwrap(), bytes);
    }
}

#[test]
fn byte_by_byte_feeding() {
    let frames = sample_frames();
    let bytes = encode_all(&frames);
    let mut dec = Decoder::new();
    let mut got = Vec::new();
    for b in &bytes {
        dec.feed(std::slice::from_ref(b));
        got.extend(drain(&mut dec));
    }
    assert_eq!(got, frames);
    assert_eq!(dec.buffered(), 0);
}

#[test]
fn arbitrary_split_points() {
    let frames: Vec<Frame> = (0..5).flat_map(|_| sample_frames()).collect();
    let bytes = encode_all(&frames);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..50 {
        let mut dec = Decoder::new();
        let mut got = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (seed % 9000) as usize % rest.len() + 1;
            dec.feed(&rest[..n]);
            rest = &rest[n..];
            got.extend(drain(&mut dec));
        }
        assert_eq!(got, frames);
    }
}

#[test]
fn missing_and_finish_report_partial_frames() {
    let bytes = Frame::Body(vec![7; 100]).to_bytes().unwrap();
    let mut dec = Decoder::new();
    assert_eq!(dec.missing().unwrap(), 5);
    dec.feed(&bytes[..3]);
    assert_eq!(dec.missing().unwrap(), 2);
    dec.feed(&bytes[3..50]);
    assert_eq!(dec.missing().unwrap(), 55);
    let err = dec.finish().unwrap_err();
    assert!(matches!(
        err,
        ProtocolError::UnexpectedEof(EofPhase::MidFrame { buffered: 50 })
    ));
    assert_eq!(
        err.to_string(),
        "unexpected end of stream in the middle of a frame (50 bytes of it received)"
    );
    dec.feed(&bytes[50..]);
    assert_eq!(dec.missing().unwrap(), 0);
    assert!(dec.next_frame().unwrap().is_some());
    dec.finish().unwrap();
}

#[test]
fn oversized_frame_fails_from_its_header_alone() {
    let mut dec = Decoder::new();
    let mut header = vec![FrameType::Body.code()];
    header.extend_from_slice(&20_000_000u32.to_be_bytes());
    dec.feed(&header);
    let err = dec.next_frame().unwrap_err();
    assert_eq!(err.to_string(), "frame too large: 20000000 bytes > 16777216 (BODY)");
    // Sticky: the bad frame is not consumed.
    assert!(matches!(
        dec.next_frame(),
        Err(ProtocolError::FrameTooLarge { len: 20_000_000, .. })
    ));
    assert!(dec.missing().is_err());
}

#[test]
fn per_type_limits() {
    let limits = Limits::DEFAULT;
    // Control frames are capped at 64 KiB.
    let err = decode_one(&raw(FrameType::Reject.code(), &[b'x'; 65537]), limits).unwrap_err();
    assert_eq!(err.to_string(), "frame too large: 65537 bytes > 65536 (REJECT)");
    let err = decode_one(&raw(FrameType::Hello.code(), &[0; 70000]), limits).unwrap_err();
    assert!(matches!(
        err,
        ProtocolError::FrameTooLarge {
            frame: FrameType::Hello,
            ..
        }
    ));
    // Response heads have their own limit and error.
    let head = ResponseHead {
        status: 200,
        reason: b"OK".to_vec(),
        headers: vec![(b"X".to_vec(), vec![b'v'; 2000])],
    };
    let bytes = Frame::ResponseHead(head).to_bytes().unwrap();
    let small = Limits {
        max_response_head_len: 1024,
        ..limits
    };
    let err = decode_one(&bytes[..HEADER_LEN], small).unwrap_err();
    assert!(matches!(err, ProtocolError::ResponseHeadTooLarge { max: 1024, .. }));
    assert_eq!(
        err.to_string(),
        format!("response head too large: {} bytes > 1024", bytes.len() - HEADER_LEN)
    );
    assert!(decode_one(&bytes, limits).unwrap().is_some());
    // Exactly at the limit is fine.
    let at = Limits {
        max_frame_len: 11,
        ..limits
    };
    assert!(
        decode_one(&Frame::Body(b"hello world".to_vec()).to_bytes().unwrap(), at)
            .unwrap()
            .is_some()
    );
    assert!(decode_one(&Frame::Body(b"hello world!".to_vec()).to_bytes().unwrap(), at).is_err());
}

#[test]
fn item_count_limits() {
    let pairs = |n: usize| {
        (0..n)
            .map(|i| (format!("K{i}").into_bytes(), b"v".to_vec()))
            .collect::<Vec<_>>()
    };
    let limits = Limits {
        max_request_items: 10,
        max_response_headers: 3,
        ..Limits::DEFAULT
    };

    let head = RequestHead {
        extra: pairs(4),
        environ: pairs(6).into(),
        ..RequestHead::default()
    };
    assert!(decode_one(&Frame::RequestHead(head).to_bytes().unwrap(), limits)
        .unwrap()
        .is_some());
    let head = RequestHead {
        extra: pairs(4),
        environ: pairs(7).into(),
        ..RequestHead::default()
    };
    let err = decode_one(&Frame::RequestHead(head).to_bytes().unwrap(), limits).unwrap_err();
    assert_eq!(err.to_string(), "too many environ items: 11 > 10");

    let head = ResponseHead {
        status: 200,
        reason: vec![],
        headers: pairs(4),
    };
    let err = decode_one(&Frame::ResponseHead(head).to_bytes().unwrap(), limits).unwrap_err();
    assert_eq!(err.to_string(), "too many response headers: 4 > 3");
}

#[test]
fn huge_counts_and_lengths_do_not_allocate() {
    // A count of 2^32-1 items in a 20-byte payload is rejected before any allocation.
    let mut p = vec![0u8; 9];
    p.extend_from_slice(&0u32.to_be_bytes()); // script
    p.extend_from_slice(&0u32.to_be_bytes()); // application group
    p.extend_from_slice(&u32::MAX.to_be_bytes()); // extra count
    let err = decode_one(&raw(FrameType::RequestHead.code(), &p), Limits::UNLIMITED).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed REQUEST_HEAD frame: item count larger than the payload"
    );
    // A string length beyond the payload.
    let mut p = vec![0u8; 9];
    p.extend_from_slice(&u32::MAX.to_be_bytes());
    let err = decode_one(&raw(FrameType::RequestHead.code(), &p), Limits::UNLIMITED).unwrap_err();
    assert_eq!(err.to_string(), "malformed REQUEST_HEAD frame: truncated script");
}

#[test]
fn corrupt_inputs() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (raw(0x7f, b""), "unknown frame type 0x7f"),
        (raw(0x00, b""), "unknown frame type 0x00"),
        (
            raw(0x01, b"HTTP/1.1 200"),
            "bad protocol magic 48545450 (peer does not speak the mod_wsgi_rs protocol)",
        ),
        (raw(0x01, b"MW"), "malformed HELLO frame: truncated magic"),
        (raw(0x01, b"MWRS\x00"), "malformed HELLO frame: truncated version"),
        (
            raw(0x01, b"MWRS\x00\x09"),
            "unsupported protocol version 9 (this side speaks 1)",
        ),
        (
            raw(0x01, b"MWRS\x00\x01\x00"),
            "malformed HELLO frame: truncated generation",
        ),
        (
            raw(0x02, b"MWRS\x00\x02"),
            "unsupported protocol version 2 (this side speaks 1)",
        ),
        (
            raw(
                0x02,
                b"MWRS\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00",
            ),
            "malformed HELLO_ACK frame: trailing bytes",
        ),
        (raw(0x03, b"\x00"), "malformed REJECT frame: truncated reject code"),
        (
            raw(0x03, b"\x00\x01\xff\xfe"),
            "malformed REJECT frame: text is not valid UTF-8",
        ),
        (
            raw(0x10, &[2, 0, 0, 0, 0, 0, 0, 0, 0]),
            "malformed REQUEST_HEAD frame: content length flag not 0 or 1",
        ),
        (
            raw(0x10, &[0, 0, 0, 0, 0, 0, 0, 0, 5]),
            "malformed REQUEST_HEAD frame: content length given but flagged absent",
        ),
        (
            raw(0x10, &[1, 0, 0, 0]),
            "malformed REQUEST_HEAD frame: truncated content length",
        ),
        (raw(0x11, b"\x00"), "malformed READY frame: trailing bytes"),
        (raw(0x12, b"\x00\x00\x01"), "malformed CREDIT frame: truncated credit"),
        (
            raw(0x12, b"\x00\x00\x00\x01\x00"),
            "malformed CREDIT frame: trailing bytes",
        ),
        (raw(0x14, b"x"), "malformed BODY_END frame: trailing bytes"),
        (
            raw(0x20, b"\x00\x2a\x00\x00\x00\x00\x00\x00\x00\x00"),
            "invalid response status 42",
        ),
        (
            raw(0x20, b"\x03\xe8\x00\x00\x00\x00\x00\x00\x00\x00"),
            "invalid response status 1000",
        ),
        (
            raw(0x20, b"\x00\xc8\x00\x00\x00\x02OK"),
            "malformed RESPONSE_HEAD frame: truncated item count",
        ),
        (
            raw(
                0x20,
                b"\x00\xc8\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x01K\x00\x00\x00\x05v",
            ),
            "malformed RESPONSE_HEAD frame: item count larger than the payload",
        ),
        (
            raw(
                0x20,
                b"\x00\xc8\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01K\x00\x00\x00\x05vvvv",
            ),
            "malformed RESPONSE_HEAD frame: truncated item value",
        ),
        (raw(0x22, &[0; 15]), "malformed FILE frame: truncated length"),
        (raw(0x23, b"\x00"), "malformed RESPONSE_END frame: trailing bytes"),
        (raw(0x30, b""), "malformed ABORT frame: truncated abort code"),
        (raw(0x31, b"\x08oops"), "malformed LOG frame: log level not in 0..=7"),
        (raw(0x31, b"\x03\xc3"), "malformed LOG frame: text is not valid UTF-8"),
    ];
    for (bytes, want) in cases {
        let err = decode_one(&bytes, Limits::DEFAULT).expect_err(want);
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn good_frames_before_a_bad_one_are_delivered() {
    let mut bytes = encode_all(&[Frame::Ready, Frame::Credit(5)]);
    bytes.extend_from_slice(&raw(0x99, b"junk"));
    let mut dec = Decoder::new();
    dec.feed(&bytes);
    assert_eq!(dec.next_frame().unwrap(), Some(Frame::Ready));
    assert_eq!(dec.next_frame().unwrap(), Some(Frame::Credit(5)));
    assert!(matches!(dec.next_frame(), Err(ProtocolError::UnknownFrameType(0x99))));
    assert!(matches!(dec.next_frame(), Err(ProtocolError::UnknownFrameType(0x99))));
}

#[test]
fn encode_refuses_what_no_decoder_accepts() {
    let mut out = vec![1, 2, 3];
    let bad = Frame::ResponseHead(ResponseHead {
        status: 99,
        ..ResponseHead::default()
    });
    assert!(matches!(bad.encode(&mut out), Err(ProtocolError::InvalidStatus(99))));
    assert_eq!(out, [1, 2, 3], "output untouched on error");
    let bad = Frame::ResponseHead(ResponseHead {
        status: 1000,
        ..ResponseHead::default()
    });
    assert!(bad.to_bytes().is_err());
}

#[test]
fn codes_and_levels() {
    assert_eq!(RejectCode::QUEUE_TIMEOUT.to_string(), "QUEUE_TIMEOUT");
    assert_eq!(RejectCode(77).to_string(), "code 77");
    assert_eq!(RejectCode(77).name(), None);
    assert!(RejectCode::SHUTTING_DOWN.retry_elsewhere());
    assert!(!RejectCode::QUEUE_TIMEOUT.retry_elsewhere());
    assert!(!RejectCode::UNAUTHORIZED.retry_elsewhere());
    assert_eq!(AbortCode::CLIENT_GONE.to_string(), "CLIENT_GONE");
    for code in 0..=7 {
        assert_eq!(LogLevel::from_u8(code).unwrap().code(), code);
    }
    assert_eq!(LogLevel::from_u8(8), None);
    assert!(LogLevel::Err < LogLevel::Info);
}

/// Hands out its data in small pieces, with an `Interrupted` and a `WouldBlock` in between.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    calls: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        match self.calls % 5 {
            1 => return Err(io::ErrorKind::Interrupted.into()),
            3 => return Err(io::ErrorKind::WouldBlock.into()),
            _ => {}
        }
        let n = buf.len().min(7).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn read_frame_reads_all_then_clean_eof() {
    let frames = sample_frames();
    let mut r = Cursor::new(encode_all(&frames));
    let mut dec = Decoder::new();
    let mut got = Vec::new();
    while let Some(f) = read_frame(&mut r, &mut dec).unwrap() {
        got.push(f);
    }
    assert_eq!(got, frames);
    assert!(read_frame(&mut r, &mut dec).unwrap().is_none());
}

#[test]
fn read_frame_survives_interrupts_and_timeouts() {
    let frames = sample_frames();
    let mut r = Trickle {
        data: encode_all(&frames),
        pos: 0,
        calls: 0,
    };
    let mut dec = Decoder::new();
    let mut got = Vec::new();
    let mut timeouts = 0;
    loop {
        match read_frame(&mut r, &mut dec) {
            Ok(Some(f)) => got.push(f),
            Ok(None) => break,
            Err(e) if e.is_timeout() => timeouts += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, frames);
    assert!(timeouts > 0);
}

#[test]
fn read_frame_truncated_stream_is_unexpected_eof() {
    let bytes = encode_all(&sample_frames());
    let mut r = Cursor::new(bytes[..bytes.len() - 1].to_vec());
    let mut dec = Decoder::new();
    let err = loop {
        match read_frame(&mut r, &mut dec) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("clean EOF on a truncated stream"),
            Err(e) => break e,
        }
    };
    assert!(err.is_eof());
    assert!(matches!(err, ProtocolError::UnexpectedEof(EofPhase::MidFrame { .. })));
}

#[test]
fn read_frame_reports_io_errors() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
        }
    }
    let err = read_frame(&mut Broken, &mut Decoder::new()).unwrap_err();
    assert!(matches!(&err, ProtocolError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset));
    assert!(!err.is_timeout());
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(err.to_string(), "I/O error: reset");
}

#[test]
fn write_helpers_match_encode() {
    for frame in sample_frames() {
        let mut w = Vec::new();
        write_frame(&mut w, &frame).unwrap();
        assert_eq!(w, frame.to_bytes().unwrap());
    }
    for len in [0, 1, 16 * 1024, 16 * 1024 + 1, 200_000] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        for (kind, frame) in [
            (FrameType::Body, Frame::Body(data.clone())),
            (FrameType::ResponseBody, Frame::ResponseBody(data.clone())),
        ] {
            let mut w = Vec::new();
            write_data_frame(&mut w, kind, &data).unwrap();
            assert_eq!(w, frame.to_bytes().unwrap());
        }
    }
    let err = write_data_frame(&mut Vec::new(), FrameType::Credit, b"x").unwrap_err();
    assert_eq!(err.to_string(), "CREDIT is not a data frame");
    assert!(encode_data_header(FrameType::File, 1).is_err());
}

#[test]
fn write_errors_are_io_errors() {
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    assert!(matches!(
        write_frame(&mut Full, &Frame::Ready),
        Err(ProtocolError::Io(_))
    ));
    assert!(matches!(
        write_data_frame(&mut Full, FrameType::Body, &[0; 100_000]),
        Err(ProtocolError::Io(_))
    ));
}

#[test]
fn fill_from_bounds_reads() {
    struct Endless;
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(0x13);
            Ok(buf.len())
        }
    }
    let mut dec = Decoder::new();
    let n = dec.fill_from(&mut Endless).unwrap();
    assert_eq!(n, 16 * 1024);
    assert_eq!(dec.buffered(), n);
    // A 16 MiB BODY header (0x13 0x13131313 is > 16 MiB) makes the next read fail early.
    assert!(matches!(dec.next_frame(), Err(ProtocolError::FrameTooLarge { .. })));

    // While a big frame is incomplete, reads grow to at most 1 MiB.
    let mut dec = Decoder::new();
    dec.feed(&encode_data_header(FrameType::Body, 10_000_000).unwrap());
    assert_eq!(dec.fill_from(&mut Endless).unwrap(), 1024 * 1024);
}

#[test]
fn decoder_compacts_its_buffer() {
    // A partial frame is always pending, so the buffer never empties by itself.
    let frame = Frame::Body(vec![1; 1000]);
    let bytes = frame.to_bytes().unwrap();
    let mut dec = Decoder::new();
    dec.feed(&bytes[..10]);
    for _ in 0..1000 {
        dec.feed(&bytes[10..]);
        dec.feed(&bytes[..10]);
        assert_eq!(dec.next_frame().unwrap().as_ref(), Some(&frame));
        assert_eq!(dec.buffered(), 10);
    }
    assert!(dec.capacity() < 256 * 1024, "capacity {}", dec.capacity());
}

/// The next frame, which must be lent data: (kind, payload, more_buffered).
fn next_lent_data(dec: &mut Decoder) -> (FrameType, Vec<u8>, bool) {
    match dec.next_frame_lent().unwrap() {
        Some(Lent::Data {
            kind,
            data,
            more_buffered,
        }) => (kind, data.to_vec(), more_buffered),
        _ => panic!("expected lent data"),
    }
}

#[test]
fn data_frames_are_lent_other_frames_decoded() {
    let mut dec = Decoder::new();
    for frame in [
        Frame::Body(b"upload".to_vec()),
        Frame::ResponseBody(b"first".to_vec()),
        Frame::ResponseBody(b"second".to_vec()),
        Frame::ResponseEnd,
    ] {
        dec.feed(&frame.to_bytes().unwrap());
    }
    assert_eq!(next_lent_data(&mut dec), (FrameType::Body, b"upload".to_vec(), true));
    assert_eq!(
        next_lent_data(&mut dec),
        (FrameType::ResponseBody, b"first".to_vec(), true)
    );
    assert_eq!(
        next_lent_data(&mut dec),
        (FrameType::ResponseBody, b"second".to_vec(), true)
    );
    assert!(matches!(
        dec.next_frame_lent().unwrap(),
        Some(Lent::Frame(Frame::ResponseEnd))
    ));
    assert_eq!(dec.buffered(), 0);
    // A partial frame is not lent, and the last one reports nothing behind it.
    let bytes = Frame::ResponseBody(b"tail".to_vec()).to_bytes().unwrap();
    dec.feed(&bytes[..6]);
    assert!(dec.next_frame_lent().unwrap().is_none());
    dec.feed(&bytes[6..]);
    assert_eq!(
        next_lent_data(&mut dec),
        (FrameType::ResponseBody, b"tail".to_vec(), false)
    );
    dec.finish().unwrap();
}
