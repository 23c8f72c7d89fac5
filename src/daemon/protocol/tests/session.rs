use super::*;

#[test]
fn handshake_and_reused_connection() {
    let mut l = Link::new();
    assert_eq!(l.client.phase(), ClientPhase::Start);
    l.c(hello()).unwrap();
    assert_eq!(l.daemon.phase(), DaemonPhase::HelloReceived);
    assert_eq!(l.daemon.client_generation(), Some(3));
    l.d(Frame::HelloAck(HelloAck { pid: 99, generation: 3 })).unwrap();
    assert_eq!(l.client.daemon(), Some(&HelloAck { pid: 99, generation: 3 }));
    for i in 1..=3u64 {
        assert!(l.client.is_idle() && l.daemon.is_idle());
        l.c(request(None)).unwrap();
        assert_eq!(
            (l.client.phase(), l.daemon.phase()),
            (ClientPhase::AwaitingReady, DaemonPhase::HeadReceived)
        );
        l.d(log("loading script")).unwrap();
        l.d(Frame::Ready).unwrap();
        assert!(l.client.request_started() && !l.client.response_started());
        l.c(Frame::BodyEnd).unwrap();
        l.d(head(200)).unwrap();
        assert!(l.client.response_started() && l.daemon.response_started());
        l.d(Frame::ResponseBody(b"hi".to_vec())).unwrap();
        l.d(Frame::File(FileSegment { offset: 0, length: 10 })).unwrap();
        l.d(log("in the middle")).unwrap();
        l.d(Frame::ResponseEnd).unwrap();
        assert_eq!(l.client.exchanges(), i);
        assert_eq!(l.daemon.exchanges(), i);
    }
    assert!(l.client.is_idle() && l.daemon.is_idle());
    // Closing an idle connection loses nothing, on either side.
    l.client.on_eof().unwrap();
    l.daemon.on_eof().unwrap();
    assert_eq!(
        (l.client.phase(), l.daemon.phase()),
        (ClientPhase::Closed, DaemonPhase::Closed)
    );
}

#[test]
fn zero_length_request_has_no_body_frames() {
    let mut l = Link::connected();
    for _ in 0..2 {
        l.c(request(Some(0))).unwrap();
        assert!(l.client.body_ended() && l.daemon.body_ended());
        l.d(Frame::Ready).unwrap();
        assert!(matches!(
            l.client.clone().on_send(&Frame::BodyEnd),
            Err(ProtocolError::UnexpectedFrame { .. })
        ));
        l.d(head(200)).unwrap();
        l.d(Frame::ResponseEnd).unwrap();
        // Idle at once on both sides: no BODY_END round trip.
        assert!(l.client.is_idle() && l.daemon.is_idle());
    }
}

#[test]
fn body_streams_under_credit() {
    let mut l = Link::connected();
    l.c(request(Some(250))).unwrap();
    l.d(Frame::Ready).unwrap();
    assert_eq!(l.client.credit(), 0);
    // No credit yet: the client may not send.
    assert!(matches!(
        l.client.clone().on_send_data(FrameType::Body, 1),
        Err(ProtocolError::CreditExceeded { len: 1, credit: 0 })
    ));
    l.d(Frame::Credit(100)).unwrap();
    l.d(Frame::Credit(100)).unwrap();
    assert_eq!((l.client.credit(), l.daemon.outstanding_credit()), (200, 200));
    l.c(Frame::Body(vec![0; 150])).unwrap();
    l.client.on_send_data(FrameType::Body, 50).unwrap();
    l.daemon.on_recv(&Frame::Body(vec![0; 50])).unwrap();
    assert_eq!((l.client.credit(), l.daemon.outstanding_credit()), (0, 0));
    let err = l.client.clone().on_send_data(FrameType::Body, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "BODY of 1 bytes exceeds the flow-control credit of 0 bytes"
    );
    l.d(Frame::Credit(1000)).unwrap();
    l.c(Frame::Body(vec![0; 50])).unwrap();
    assert_eq!((l.client.body_sent(), l.daemon.body_received()), (250, 250));
    // Declared Content-Length is enforced on both sides.
    let err = l.client.clone().on_send_data(FrameType::Body, 1).unwrap_err();
    assert_eq!(err.to_string(), "request body longer than declared: 251 bytes > 250");
    assert!(matches!(
        l.daemon.clone().on_recv(&Frame::Body(vec![1])),
        Err(ProtocolError::BodyTooLong { .. })
    ));
    l.c(Frame::BodyEnd).unwrap();
    assert!(l.client.body_ended() && l.daemon.body_ended());
    // Credit sent before the daemon saw BODY_END crosses it on the wire: ignored by the client.
    l.client.on_recv(&Frame::Credit(10)).unwrap();
    assert_eq!(l.client.credit(), 0);
    // But the daemon knows the body ended and may not grant more.
    let err = l.daemon.clone().on_send(&Frame::Credit(10)).unwrap_err();
    assert_eq!(err.to_string(), "protocol violation: CREDIT frame sent after BODY_END");
    l.d(head(201)).unwrap();
    l.d(Frame::ResponseEnd).unwrap();
    assert!(l.client.is_idle() && l.daemon.is_idle());
}

#[test]
fn response_before_body_end_then_drain() {
    let mut l = Link::connected();
    l.c(request(None)).unwrap();
    l.d(Frame::Ready).unwrap();
    l.d(Frame::Credit(64)).unwrap();
    l.d(head(413)).unwrap();
    l.d(Frame::ResponseEnd).unwrap();
    assert_eq!(
        (l.client.phase(), l.daemon.phase()),
        (ClientPhase::Finishing, DaemonPhase::Draining)
    );
    // The client must finish with BODY_END now: no more body, no reuse yet.
    let err = l.client.clone().on_send_data(FrameType::Body, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: BODY frame sent after RESPONSE_END"
    );
    assert!(l.client.clone().on_send(&request(None)).is_err());
    // A body chunk already in flight is accepted (and discarded) by the draining daemon.
    l.daemon.on_recv(&Frame::Body(vec![0; 64])).unwrap();
    assert!(
        l.daemon.clone().on_recv(&Frame::Body(vec![0; 1])).is_err(),
        "beyond granted credit"
    );
    assert!(l.daemon.clone().on_send(&Frame::Credit(1)).is_err());
    assert!(l.daemon.clone().on_send(&log("late")).is_err());
    l.c(Frame::BodyEnd).unwrap();
    assert!(l.client.is_idle() && l.daemon.is_idle());
    // EOF while draining (client chose not to reuse) loses nothing.
    let mut l2 = Link::connected();
    l2.c(request(None)).unwrap();
    l2.d(Frame::Ready).unwrap();
    l2.d(head(200)).unwrap();
    l2.d(Frame::ResponseEnd).unwrap();
    l2.daemon.on_eof().unwrap();
    l2.client.on_eof().unwrap();
}

#[test]
fn rejects_and_aborts_close_the_connection() {
    let mut l = Link::new();
    l.c(hello()).unwrap();
    l.d(Frame::Reject(Reject {
        code: RejectCode::UNAUTHORIZED,
        message: "bad token".into(),
    }))
    .unwrap();
    assert_eq!(
        (l.client.phase(), l.daemon.phase()),
        (ClientPhase::Closed, DaemonPhase::Closed)
    );
    l.client.on_eof().unwrap();

    let mut l = Link::connected();
    l.c(request(None)).unwrap();
    l.d(Frame::Reject(Reject {
        code: RejectCode::QUEUE_TIMEOUT,
        message: "waited 30 s".into(),
    }))
    .unwrap();
    assert!(!l.client.request_started());
    assert_eq!(l.client.phase(), ClientPhase::Closed);
    assert!(l.client.on_recv(&Frame::Ready).is_err());

    // Daemon aborts after the head: the client sees it with response_started() true.
    let mut l = Link::connected();
    l.c(request(None)).unwrap();
    l.d(Frame::Ready).unwrap();
    l.d(head(200)).unwrap();
    l.d(abort(AbortCode::APP_ERROR)).unwrap();
    assert!(l.client.response_started());
    assert_eq!(
        (l.client.phase(), l.daemon.phase()),
        (ClientPhase::Closed, DaemonPhase::Closed)
    );

    // Client aborts mid-body (HTTP client went away).
    let mut l = Link::connected();
    l.c(request(Some(10))).unwrap();
    l.d(Frame::Ready).unwrap();
    l.c(abort(AbortCode::CLIENT_GONE)).unwrap();
    assert_eq!(
        (l.client.phase(), l.daemon.phase()),
        (ClientPhase::Closed, DaemonPhase::Closed)
    );
    l.daemon.on_eof().unwrap();

    // A daemon going away may ABORT an idle connection; the client reads it before READY.
    let mut l = Link::connected();
    l.d(abort(AbortCode::SHUTTING_DOWN)).unwrap();
    assert!(!l.client.request_started());
}

#[test]
fn client_eof_phases() {
    let cases: [(&[Frame], Option<EofPhase>); 6] = [
        (&[], Some(EofPhase::Handshake)),
        (&[request(None)], Some(EofPhase::BeforeReady)),
        (&[request(None), Frame::Ready], Some(EofPhase::BeforeResponseHead)),
        (
            &[request(None), Frame::Ready, head(200)],
            Some(EofPhase::AfterResponseHead),
        ),
        (&[request(None), Frame::Ready, head(200), Frame::ResponseEnd], None),
        (
            &[
                request(None),
                Frame::Ready,
                Frame::BodyEnd,
                head(200),
                Frame::ResponseEnd,
            ],
            None,
        ),
    ];
    for (i, (frames, want)) in cases.iter().enumerate() {
        let mut l = if i == 0 { Link::new() } else { Link::connected() };
        if i == 0 {
            l.client.on_send(&hello()).unwrap();
        }
        for f in frames.iter() {
            if f.frame_type().sent_by_client() {
                l.c(f.clone()).unwrap();
            } else {
                l.d(f.clone()).unwrap();
            }
        }
        match (l.client.on_eof(), want) {
            (Ok(()), None) => {}
            (Err(ProtocolError::UnexpectedEof(got)), Some(want)) => assert_eq!(got, *want),
            (got, want) => panic!("case {i}: {got:?} vs {want:?}"),
        }
        assert_eq!(l.client.phase(), ClientPhase::Closed);
    }
    let mut l = Link::connected();
    l.c(request(None)).unwrap();
    l.d(Frame::Ready).unwrap();
    l.d(head(200)).unwrap();
    let err = l.client.on_eof().unwrap_err();
    assert_eq!(err.to_string(), "unexpected end of stream after response head");
    assert!(l.client.response_started(), "kept for the 502-vs-truncation decision");
    let err = ProtocolError::UnexpectedEof(EofPhase::BeforeResponseHead);
    assert_eq!(err.to_string(), "unexpected end of stream before response head");
}

#[test]
fn daemon_eof_phases() {
    let mut d = DaemonSession::new();
    d.on_eof().unwrap(); // connected and left without a word: nothing lost
    let mut d = DaemonSession::new();
    d.on_recv(&hello()).unwrap();
    assert!(matches!(
        d.on_eof(),
        Err(ProtocolError::UnexpectedEof(EofPhase::Handshake))
    ));

    let mut l = Link::connected();
    l.c(request(None)).unwrap();
    assert!(matches!(
        l.daemon.clone().on_eof(),
        Err(ProtocolError::UnexpectedEof(EofPhase::BeforeReady))
    ));
    l.d(Frame::Ready).unwrap();
    let err = l.daemon.clone().on_eof().unwrap_err();
    assert_eq!(err.to_string(), "unexpected end of stream in the request body");
    l.c(Frame::BodyEnd).unwrap();
    assert!(matches!(
        l.daemon.clone().on_eof(),
        Err(ProtocolError::UnexpectedEof(EofPhase::DuringResponse))
    ));
}

#[test]
fn client_side_violations() {
    let mut l = Link::connected();
    l.c(request(None)).unwrap();
    let cases: Vec<(Frame, &str)> = vec![
        (
            head(200),
            "protocol violation: RESPONSE_HEAD frame received before READY",
        ),
        (
            Frame::ResponseBody(vec![1]),
            "protocol violation: RESPONSE_BODY frame received before READY",
        ),
        (
            Frame::Credit(1),
            "protocol violation: CREDIT frame received before READY",
        ),
        (
            Frame::HelloAck(HelloAck { pid: 1, generation: 1 }),
            "protocol violation: HELLO_ACK frame received before READY",
        ),
        (
            hello(),
            "protocol violation: HELLO frame received (only the client sends it)",
        ),
        (
            Frame::BodyEnd,
            "protocol violation: BODY_END frame received (only the client sends it)",
        ),
    ];
    for (f, want) in cases {
        let mut c = l.client.clone();
        assert_eq!(c.on_recv(&f).unwrap_err().to_string(), want);
        assert_eq!(c.phase(), ClientPhase::Closed, "an error closes the session");
    }
    l.d(Frame::Ready).unwrap();
    let cases: Vec<(Frame, &str)> = vec![
        (
            Frame::ResponseBody(vec![1]),
            "protocol violation: RESPONSE_BODY frame received before response head",
        ),
        (
            Frame::File(FileSegment::default()),
            "protocol violation: FILE frame received before response head",
        ),
        (
            Frame::ResponseEnd,
            "protocol violation: RESPONSE_END frame received before response head",
        ),
        (
            Frame::Ready,
            "protocol violation: READY frame received before response head",
        ),
    ];
    for (f, want) in cases {
        assert_eq!(l.client.clone().on_recv(&f).unwrap_err().to_string(), want);
    }
    let sends: Vec<(Frame, &str)> = vec![
        (
            request(None),
            "protocol violation: REQUEST_HEAD frame sent before response head",
        ),
        (hello(), "protocol violation: HELLO frame sent before response head"),
        (
            Frame::Credit(5),
            "protocol violation: CREDIT frame sent (only the daemon sends it)",
        ),
        (
            Frame::ResponseBody(vec![]),
            "protocol violation: RESPONSE_BODY frame sent (only the daemon sends it)",
        ),
    ];
    for (f, want) in sends {
        assert_eq!(l.client.clone().on_send(&f).unwrap_err().to_string(), want);
    }
    assert!(matches!(
        l.client.clone().on_send_data(FrameType::Log, 1),
        Err(ProtocolError::NotADataFrame(_))
    ));
    l.d(head(200)).unwrap();
    let err = l.client.clone().on_recv(&head(200)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: RESPONSE_HEAD frame received after response head"
    );
    l.c(Frame::BodyEnd).unwrap();
    let err = l.client.clone().on_send(&Frame::Body(vec![1])).unwrap_err();
    assert_eq!(err.to_string(), "protocol violation: BODY frame sent after BODY_END");
    let err = l.client.clone().on_send(&Frame::BodyEnd).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: BODY_END frame sent after BODY_END"
    );
    l.d(Frame::ResponseEnd).unwrap();
    // Idle: the daemon says nothing until the next REQUEST_HEAD (except ABORT).
    for f in [Frame::Ready, log("x"), Frame::Credit(1), head(200), Frame::ResponseEnd] {
        let err = l.client.clone().on_recv(&f).unwrap_err();
        assert!(err.to_string().ends_with("between requests"), "{err}");
    }
    // Before the handshake nothing but HELLO may be sent.
    let mut c = ClientSession::new();
    let err = c.on_send(&request(None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: REQUEST_HEAD frame sent before HELLO"
    );
    let mut c = ClientSession::new();
    c.on_send(&hello()).unwrap();
    assert_eq!(
        c.on_send(&request(None)).unwrap_err().to_string(),
        "protocol violation: REQUEST_HEAD frame sent during the handshake"
    );
}

#[test]
fn daemon_side_violations() {
    let mut d = DaemonSession::new();
    let err = d.on_recv(&request(None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: REQUEST_HEAD frame received before HELLO"
    );
    let mut d = DaemonSession::new();
    assert!(d.on_send(&Frame::HelloAck(HelloAck { pid: 1, generation: 1 })).is_err());

    let mut l = Link::connected();
    assert!(l.daemon.clone().on_send(&Frame::Ready).is_err());
    assert!(l.daemon.clone().on_recv(&Frame::Body(vec![])).is_err());
    l.c(request(None)).unwrap();
    let err = l.daemon.clone().on_recv(&Frame::Body(vec![1])).unwrap_err();
    assert_eq!(err.to_string(), "protocol violation: BODY frame received before READY");
    let err = l.daemon.clone().on_send(&head(200)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: RESPONSE_HEAD frame sent before READY"
    );
    let err = l.daemon.clone().on_recv(&request(None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: REQUEST_HEAD frame received before READY"
    );
    l.d(Frame::Ready).unwrap();
    let err = l.daemon.clone().on_recv(&Frame::Body(vec![1])).unwrap_err();
    assert!(matches!(err, ProtocolError::CreditExceeded { len: 1, credit: 0 }));
    let err = l.daemon.clone().on_send(&Frame::ResponseEnd).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: RESPONSE_END frame sent before response head"
    );
    let err = l.daemon.clone().on_send_data(FrameType::ResponseBody, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: RESPONSE_BODY frame sent before response head"
    );
    let err = l
        .daemon
        .clone()
        .on_send(&Frame::File(FileSegment::default()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: FILE frame sent before response head"
    );
    let err = l.daemon.clone().on_send(&Frame::Body(vec![])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: BODY frame sent (only the client sends it)"
    );
    let err = l.daemon.clone().on_recv(&Frame::Ready).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: READY frame received (only the daemon sends it)"
    );
    let err = l.daemon.clone().on_send(&Frame::Reject(Reject {
        code: RejectCode::INTERNAL,
        message: String::new(),
    }));
    assert_eq!(
        err.unwrap_err().to_string(),
        "protocol violation: REJECT frame sent in the middle of a request"
    );
    l.d(head(200)).unwrap();
    let err = l.daemon.clone().on_send(&head(200)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: RESPONSE_HEAD frame sent after response head"
    );
    l.daemon.on_send_data(FrameType::ResponseBody, 10).unwrap();
    l.d(Frame::ResponseEnd).unwrap();
    assert_eq!(l.daemon.phase(), DaemonPhase::Draining);
    let err = l.daemon.clone().on_send(&Frame::ResponseEnd).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: RESPONSE_END frame sent after RESPONSE_END"
    );
    l.c(Frame::BodyEnd).unwrap();
    assert!(l.daemon.is_idle());
}

#[test]
fn lent_data_is_checked_like_the_decoded_frame() {
    // `on_recv_data` must accept and refuse exactly what `on_recv` does for the same frame.
    let same = |a: Result<(), ProtocolError>, b: Result<(), ProtocolError>| {
        assert_eq!(a.map_err(|e| e.to_string()), b.map_err(|e| e.to_string()));
    };
    let mut l = Link::connected();
    for (frame, kind) in [
        (Frame::Body(vec![1; 3]), FrameType::Body),
        (Frame::ResponseBody(vec![1; 3]), FrameType::ResponseBody),
    ] {
        same(l.client.clone().on_recv(&frame), l.client.clone().on_recv_data(kind, 3));
        same(l.daemon.clone().on_recv(&frame), l.daemon.clone().on_recv_data(kind, 3));
    }
    l.c(request(None)).unwrap();
    l.d(Frame::Ready).unwrap();
    l.d(Frame::Credit(2)).unwrap();
    // Over the credit, and a RESPONSE_BODY before the head, are refused either way.
    let err = l.daemon.clone().on_recv_data(FrameType::Body, 3).unwrap_err();
    assert!(matches!(err, ProtocolError::CreditExceeded { len: 3, credit: 2 }));
    let err = l.client.clone().on_recv_data(FrameType::ResponseBody, 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: RESPONSE_BODY frame received before response head"
    );
    l.daemon.on_recv_data(FrameType::Body, 2).unwrap();
    assert_eq!(l.daemon.body_received(), 2);
    l.d(head(200)).unwrap();
    l.client.on_recv_data(FrameType::ResponseBody, 3).unwrap();
    let err = l.client.clone().on_recv_data(FrameType::Body, 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocol violation: BODY frame received (only the client sends it)"
    );
}
