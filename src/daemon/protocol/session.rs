//! Per-connection state machines: which frame may come when, and flow-control accounting.
//!
//! Both sessions are pure bookkeeping: call `on_send` before writing a frame, `on_recv` after
//! decoding one, `on_eof` when the peer closed. Any error leaves the session `Closed` (the
//! connection must be dropped) but keeps what it knew about the exchange, so the caller can
//! still ask e.g. [`ClientSession::response_started`] to choose between 502 and truncation.

use super::error::{EofPhase, ProtocolError};
use super::frame::{Frame, FrameType, HelloAck};

/// Where the Apache child's side of a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientPhase {
    /// Connected; HELLO not sent yet.
    Start,
    /// HELLO sent, waiting for HELLO_ACK or REJECT.
    Handshake,
    /// Between requests: the next REQUEST_HEAD may be sent.
    Idle,
    /// REQUEST_HEAD sent, waiting for READY (or REJECT).
    AwaitingReady,
    /// READY received, response head not yet.
    AwaitingHead,
    /// Response head received, RESPONSE_END not yet.
    Streaming,
    /// RESPONSE_END received but the body is not ended: send BODY_END next.
    Finishing,
    /// REJECT, ABORT, EOF or an error: drop the connection.
    Closed,
}

/// Where the daemon's side of a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonPhase {
    /// Accepted; waiting for HELLO.
    AwaitingHello,
    /// HELLO received: send HELLO_ACK or REJECT.
    HelloReceived,
    /// Between requests: waiting for REQUEST_HEAD.
    Idle,
    /// REQUEST_HEAD received: send READY or REJECT.
    HeadReceived,
    /// READY sent; body and response in progress.
    Active,
    /// RESPONSE_END sent; discarding BODY frames until BODY_END.
    Draining,
    /// REJECT, ABORT, EOF or an error: drop the connection.
    Closed,
}

/// Request-body accounting, the same on both sides.
#[derive(Clone, Debug, Default)]
struct BodyFlow {
    declared: Option<u64>,
    total: u64,
    credit: u64,
    ended: bool,
}

impl BodyFlow {
    /// A declared length of 0 means no body at all: it is ended from the start
    /// and no BODY or BODY_END frame follows (saves a frame per bodiless request).
    fn new(declared: Option<u64>) -> BodyFlow {
        BodyFlow {
            declared,
            ended: declared == Some(0),
            ..BodyFlow::default()
        }
    }

    fn grant(&mut self, n: u32) -> Result<(), ProtocolError> {
        self.credit = self
            .credit
            .checked_add(u64::from(n))
            .ok_or(ProtocolError::CreditOverflow)?;
        Ok(())
    }

    fn data(&mut self, len: usize, sent: bool) -> Result<(), ProtocolError> {
        if self.ended {
            return Err(violation(FrameType::Body, sent, "after BODY_END"));
        }
        let len = len as u64;
        if len > self.credit {
            return Err(ProtocolError::CreditExceeded {
                len,
                credit: self.credit,
            });
        }
        let total = self.total.saturating_add(len);
        if let Some(declared) = self.declared {
            if total > declared {
                return Err(ProtocolError::BodyTooLong { declared, total });
            }
        }
        self.credit -= len;
        self.total = total;
        Ok(())
    }

    fn end(&mut self, sent: bool) -> Result<(), ProtocolError> {
        if self.ended {
            return Err(violation(FrameType::BodyEnd, sent, "after BODY_END"));
        }
        self.ended = true;
        self.credit = 0;
        Ok(())
    }
}

fn violation(frame: FrameType, sent: bool, reason: &'static str) -> ProtocolError {
    ProtocolError::UnexpectedFrame { frame, sent, reason }
}

fn client_where(phase: ClientPhase) -> &'static str {
    match phase {
        ClientPhase::Start => "before HELLO",
        ClientPhase::Handshake => "during the handshake",
        ClientPhase::Idle => "between requests",
        ClientPhase::AwaitingReady => "before READY",
        ClientPhase::AwaitingHead => "before response head",
        ClientPhase::Streaming => "after response head",
        ClientPhase::Finishing => "after RESPONSE_END",
        ClientPhase::Closed => "after the connection was closed",
    }
}

fn daemon_where(phase: DaemonPhase) -> &'static str {
    match phase {
        DaemonPhase::AwaitingHello => "before HELLO",
        DaemonPhase::HelloReceived => "during the handshake",
        DaemonPhase::Idle => "between requests",
        DaemonPhase::HeadReceived => "before READY",
        DaemonPhase::Active => "in the middle of a request",
        DaemonPhase::Draining => "after RESPONSE_END",
        DaemonPhase::Closed => "after the connection was closed",
    }
}

const ONLY_CLIENT: &str = "(only the client sends it)";
const ONLY_DAEMON: &str = "(only the daemon sends it)";

/// The Apache child's view of one daemon connection (handshake, then requests in turn).
#[derive(Clone, Debug)]
pub struct ClientSession {
    phase: ClientPhase,
    daemon: Option<HelloAck>,
    body: BodyFlow,
    ready: bool,
    head: bool,
    exchanges: u64,
}

impl Default for ClientSession {
    fn default() -> Self {
        ClientSession::new()
    }
}

impl ClientSession {
    pub fn new() -> ClientSession {
        ClientSession {
            phase: ClientPhase::Start,
            daemon: None,
            body: BodyFlow::default(),
            ready: false,
            head: false,
            exchanges: 0,
        }
    }

    pub fn phase(&self) -> ClientPhase {
        self.phase
    }

    /// The daemon's HELLO_ACK (pid, generation), once received.
    pub fn daemon(&self) -> Option<&HelloAck> {
        self.daemon.as_ref()
    }

    /// A new REQUEST_HEAD may be sent now (connection reusable).
    pub fn is_idle(&self) -> bool {
        self.phase == ClientPhase::Idle
    }

    /// READY was received for the current (or last) request: the app may have seen it, so it
    /// must not be retried.
    pub fn request_started(&self) -> bool {
        self.ready
    }

    /// RESPONSE_HEAD was received for the current (or last) request: a failure now is a
    /// truncated response, not an error status.
    pub fn response_started(&self) -> bool {
        self.head
    }

    /// Body bytes the client may send now.
    pub fn credit(&self) -> u64 {
        self.body.credit
    }

    /// BODY_END has been sent for the current request.
    pub fn body_ended(&self) -> bool {
        self.body.ended
    }

    /// Body bytes sent for the current request.
    pub fn body_sent(&self) -> u64 {
        self.body.total
    }

    /// REQUEST_HEADs sent on this connection.
    pub fn exchanges(&self) -> u64 {
        self.exchanges
    }

    /// Checks and records a frame about to be sent.
    pub fn on_send(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let r = self.send(frame);
        self.close_on_error(r)
    }

    /// Checks and records a BODY frame of `len` bytes about to be written with
    /// [`super::write_data_frame`].
    pub fn on_send_data(&mut self, kind: FrameType, len: usize) -> Result<(), ProtocolError> {
        let r = self.send_data(kind, len);
        self.close_on_error(r)
    }

    /// Checks and records a frame received from the daemon.
    pub fn on_recv(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let r = self.recv(frame);
        self.close_on_error(r)
    }

    /// Checks and records a data frame of `len` bytes received without being
    /// decoded into a [`Frame`] (see [`super::Lent`]).
    pub fn on_recv_data(&mut self, kind: FrameType, len: usize) -> Result<(), ProtocolError> {
        let r = self.recv_data(kind, len);
        self.close_on_error(r)
    }

    /// The daemon closed the connection. `Ok` when that loses nothing (between requests, after
    /// REJECT/ABORT, or after RESPONSE_END); otherwise the phase says what was cut short.
    pub fn on_eof(&mut self) -> Result<(), ProtocolError> {
        let phase = match self.phase {
            ClientPhase::Idle | ClientPhase::Finishing | ClientPhase::Closed => None,
            ClientPhase::Start | ClientPhase::Handshake => Some(EofPhase::Handshake),
            ClientPhase::AwaitingReady => Some(EofPhase::BeforeReady),
            ClientPhase::AwaitingHead => Some(EofPhase::BeforeResponseHead),
            ClientPhase::Streaming => Some(EofPhase::AfterResponseHead),
        };
        self.phase = ClientPhase::Closed;
        phase.map_or(Ok(()), |p| Err(ProtocolError::UnexpectedEof(p)))
    }

    fn close_on_error(&mut self, r: Result<(), ProtocolError>) -> Result<(), ProtocolError> {
        if r.is_err() {
            self.phase = ClientPhase::Closed;
        }
        r
    }

    fn send(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let kind = frame.frame_type();
        match (frame, self.phase) {
            (Frame::Hello(_), ClientPhase::Start) => self.phase = ClientPhase::Handshake,
            (Frame::RequestHead(h), ClientPhase::Idle) => {
                self.phase = ClientPhase::AwaitingReady;
                self.body = BodyFlow::new(h.content_length);
                self.ready = false;
                self.head = false;
                self.exchanges += 1;
            }
            (Frame::Body(data), _) => return self.send_data(FrameType::Body, data.len()),
            (Frame::BodyEnd, ClientPhase::AwaitingHead | ClientPhase::Streaming) => self.body.end(true)?,
            (Frame::BodyEnd, ClientPhase::Finishing) => {
                self.body.end(true)?;
                self.phase = ClientPhase::Idle;
            }
            (Frame::Abort(_), phase) if phase != ClientPhase::Closed => self.phase = ClientPhase::Closed,
            _ if !kind.sent_by_client() => return Err(violation(kind, true, ONLY_DAEMON)),
            (_, phase) => return Err(violation(kind, true, client_where(phase))),
        }
        Ok(())
    }

    fn send_data(&mut self, kind: FrameType, len: usize) -> Result<(), ProtocolError> {
        match (kind, self.phase) {
            (FrameType::Body, ClientPhase::AwaitingHead | ClientPhase::Streaming) => self.body.data(len, true),
            (FrameType::Body, phase) => Err(violation(kind, true, client_where(phase))),
            (FrameType::ResponseBody, _) => Err(violation(kind, true, ONLY_DAEMON)),
            _ => Err(ProtocolError::NotADataFrame(kind)),
        }
    }

    fn recv(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let kind = frame.frame_type();
        match (frame, self.phase) {
            (Frame::HelloAck(ack), ClientPhase::Handshake) => {
                self.daemon = Some(ack.clone());
                self.phase = ClientPhase::Idle;
            }
            (Frame::Reject(_), ClientPhase::Handshake | ClientPhase::AwaitingReady) => self.phase = ClientPhase::Closed,
            (Frame::Ready, ClientPhase::AwaitingReady) => {
                self.ready = true;
                self.phase = ClientPhase::AwaitingHead;
            }
            // Credit can cross our BODY_END on the wire: ignore it once the body has ended.
            (Frame::Credit(n), ClientPhase::AwaitingHead | ClientPhase::Streaming) if !self.body.ended => {
                self.body.grant(*n)?
            }
            (Frame::Credit(_), ClientPhase::AwaitingHead | ClientPhase::Streaming) => {}
            (Frame::ResponseHead(_), ClientPhase::AwaitingHead) => {
                self.head = true;
                self.phase = ClientPhase::Streaming;
            }
            (Frame::ResponseBody(data), _) => return self.recv_data(FrameType::ResponseBody, data.len()),
            (Frame::File(_), ClientPhase::Streaming) => {}
            (Frame::ResponseEnd, ClientPhase::Streaming) => {
                self.phase = if self.body.ended {
                    ClientPhase::Idle
                } else {
                    ClientPhase::Finishing
                };
            }
            (Frame::Log(_), ClientPhase::AwaitingReady | ClientPhase::AwaitingHead | ClientPhase::Streaming) => {}
            (Frame::Abort(_), phase) if phase != ClientPhase::Closed => self.phase = ClientPhase::Closed,
            _ if !kind.sent_by_daemon() => return Err(violation(kind, false, ONLY_CLIENT)),
            (_, phase) => return Err(violation(kind, false, client_where(phase))),
        }
        Ok(())
    }

    fn recv_data(&mut self, kind: FrameType, _len: usize) -> Result<(), ProtocolError> {
        match (kind, self.phase) {
            (FrameType::ResponseBody, ClientPhase::Streaming) => Ok(()),
            (FrameType::ResponseBody, phase) => Err(violation(kind, false, client_where(phase))),
            (FrameType::Body, _) => Err(violation(kind, false, ONLY_CLIENT)),
            _ => Err(ProtocolError::NotADataFrame(kind)),
        }
    }
}

/// The daemon's view of one client connection (handshake, then requests in turn).
#[derive(Clone, Debug)]
pub struct DaemonSession {
    phase: DaemonPhase,
    client_generation: Option<u64>,
    body: BodyFlow,
    head: bool,
    exchanges: u64,
}

impl Default for DaemonSession {
    fn default() -> Self {
        DaemonSession::new()
    }
}

impl DaemonSession {
    pub fn new() -> DaemonSession {
        DaemonSession {
            phase: DaemonPhase::AwaitingHello,
            client_generation: None,
            body: BodyFlow::default(),
            head: false,
            exchanges: 0,
        }
    }

    pub fn phase(&self) -> DaemonPhase {
        self.phase
    }

    /// The generation from the client's HELLO, once received.
    pub fn client_generation(&self) -> Option<u64> {
        self.client_generation
    }

    /// Waiting for the next REQUEST_HEAD.
    pub fn is_idle(&self) -> bool {
        self.phase == DaemonPhase::Idle
    }

    /// RESPONSE_HEAD was sent for the current request.
    pub fn response_started(&self) -> bool {
        self.head
    }

    /// Body bytes granted but not yet received: what the client may still send.
    pub fn outstanding_credit(&self) -> u64 {
        self.body.credit
    }

    /// BODY_END was received for the current request.
    pub fn body_ended(&self) -> bool {
        self.body.ended
    }

    /// Body bytes received for the current request.
    pub fn body_received(&self) -> u64 {
        self.body.total
    }

    /// REQUEST_HEADs received on this connection.
    pub fn exchanges(&self) -> u64 {
        self.exchanges
    }

    /// Checks and records a frame about to be sent.
    pub fn on_send(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let r = self.send(frame);
        self.close_on_error(r)
    }

    /// Checks and records a RESPONSE_BODY frame of `len` bytes about to be written with
    /// [`super::write_data_frame`].
    pub fn on_send_data(&mut self, kind: FrameType, len: usize) -> Result<(), ProtocolError> {
        let r = self.send_data(kind, len);
        self.close_on_error(r)
    }

    /// Checks and records a frame received from the client.
    pub fn on_recv(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let r = self.recv(frame);
        self.close_on_error(r)
    }

    /// Checks and records a data frame of `len` bytes received without being
    /// decoded into a [`Frame`] (see [`super::Lent`]).
    pub fn on_recv_data(&mut self, kind: FrameType, len: usize) -> Result<(), ProtocolError> {
        let r = self.recv_data(kind, len);
        self.close_on_error(r)
    }

    /// The client closed the connection. `Ok` when that loses nothing (before HELLO, between
    /// requests, after REJECT/ABORT, or once RESPONSE_END was sent).
    pub fn on_eof(&mut self) -> Result<(), ProtocolError> {
        let phase = match self.phase {
            DaemonPhase::AwaitingHello | DaemonPhase::Idle | DaemonPhase::Draining | DaemonPhase::Closed => None,
            DaemonPhase::HelloReceived => Some(EofPhase::Handshake),
            DaemonPhase::HeadReceived => Some(EofPhase::BeforeReady),
            DaemonPhase::Active if !self.body.ended => Some(EofPhase::RequestBody),
            DaemonPhase::Active => Some(EofPhase::DuringResponse),
        };
        self.phase = DaemonPhase::Closed;
        phase.map_or(Ok(()), |p| Err(ProtocolError::UnexpectedEof(p)))
    }

    fn close_on_error(&mut self, r: Result<(), ProtocolError>) -> Result<(), ProtocolError> {
        if r.is_err() {
            self.phase = DaemonPhase::Closed;
        }
        r
    }

    fn send(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let kind = frame.frame_type();
        match (frame, self.phase) {
            (Frame::HelloAck(_), DaemonPhase::HelloReceived) => self.phase = DaemonPhase::Idle,
            (Frame::Reject(_), DaemonPhase::HelloReceived | DaemonPhase::HeadReceived) => {
                self.phase = DaemonPhase::Closed
            }
            (Frame::Ready, DaemonPhase::HeadReceived) => self.phase = DaemonPhase::Active,
            (Frame::Credit(_), DaemonPhase::Active) if self.body.ended => {
                return Err(violation(kind, true, "after BODY_END"))
            }
            (Frame::Credit(n), DaemonPhase::Active) => self.body.grant(*n)?,
            (Frame::ResponseHead(_), DaemonPhase::Active) if self.head => {
                return Err(violation(kind, true, "after response head"))
            }
            (Frame::ResponseHead(_), DaemonPhase::Active) => self.head = true,
            (Frame::ResponseBody(data), _) => return self.send_data(FrameType::ResponseBody, data.len()),
            (Frame::File(_), _) => return self.send_data(FrameType::File, 0),
            (Frame::ResponseEnd, DaemonPhase::Active) if self.head => {
                self.phase = if self.body.ended {
                    DaemonPhase::Idle
                } else {
                    DaemonPhase::Draining
                };
            }
            (Frame::ResponseEnd, DaemonPhase::Active) => return Err(violation(kind, true, "before response head")),
            (Frame::Log(_), DaemonPhase::HeadReceived | DaemonPhase::Active) => {}
            (Frame::Abort(_), phase) if phase != DaemonPhase::Closed => self.phase = DaemonPhase::Closed,
            _ if !kind.sent_by_daemon() => return Err(violation(kind, true, ONLY_CLIENT)),
            (_, phase) => return Err(violation(kind, true, daemon_where(phase))),
        }
        Ok(())
    }

    fn send_data(&mut self, kind: FrameType, _len: usize) -> Result<(), ProtocolError> {
        match (kind, self.phase) {
            (FrameType::ResponseBody | FrameType::File, DaemonPhase::Active) if self.head => Ok(()),
            (FrameType::ResponseBody | FrameType::File, DaemonPhase::Active) => {
                Err(violation(kind, true, "before response head"))
            }
            (FrameType::ResponseBody | FrameType::File, phase) => Err(violation(kind, true, daemon_where(phase))),
            (FrameType::Body, _) => Err(violation(kind, true, ONLY_CLIENT)),
            _ => Err(ProtocolError::NotADataFrame(kind)),
        }
    }

    fn recv(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let kind = frame.frame_type();
        match (frame, self.phase) {
            (Frame::Hello(h), DaemonPhase::AwaitingHello) => {
                self.client_generation = Some(h.generation);
                self.phase = DaemonPhase::HelloReceived;
            }
            (Frame::RequestHead(h), DaemonPhase::Idle) => {
                self.phase = DaemonPhase::HeadReceived;
                self.body = BodyFlow::new(h.content_length);
                self.head = false;
                self.exchanges += 1;
            }
            (Frame::Body(data), _) => return self.recv_data(FrameType::Body, data.len()),
            (Frame::BodyEnd, DaemonPhase::Active) => self.body.end(false)?,
            (Frame::BodyEnd, DaemonPhase::Draining) => {
                self.body.end(false)?;
                self.phase = DaemonPhase::Idle;
            }
            (Frame::Abort(_), phase) if phase != DaemonPhase::Closed => self.phase = DaemonPhase::Closed,
            _ if !kind.sent_by_client() => return Err(violation(kind, false, ONLY_DAEMON)),
            (_, phase) => return Err(violation(kind, false, daemon_where(phase))),
        }
        Ok(())
    }

    fn recv_data(&mut self, kind: FrameType, len: usize) -> Result<(), ProtocolError> {
        match (kind, self.phase) {
            (FrameType::Body, DaemonPhase::Active | DaemonPhase::Draining) => self.body.data(len, false),
            (FrameType::Body, phase) => Err(violation(kind, false, daemon_where(phase))),
            (FrameType::ResponseBody, _) => Err(violation(kind, false, ONLY_DAEMON)),
            _ => Err(ProtocolError::NotADataFrame(kind)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_overflow_is_an_error() {
        let mut flow = BodyFlow {
            credit: u64::MAX - 1,
            ..BodyFlow::default()
        };
        flow.grant(1).unwrap();
        assert!(matches!(flow.grant(1), Err(ProtocolError::CreditOverflow)));
        assert_eq!(
            ProtocolError::CreditOverflow.to_string(),
            "flow-control credit overflow"
        );
    }
}
