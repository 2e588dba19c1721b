//! Direct mode's side of the loop: the hand-over record read from the gateway, the client
//! then served on its own socket, and the messages held for it until its kind is known.

use super::*;

impl Server {
    /// Direct mode: reads the gateway's first bytes on connection `idx`: once the hand-over
    /// record is complete the client is served on its own socket, its record lines given to
    /// the service as its context; without a socket it is a relayed client. Messages held
    /// for it are queued.
    pub(super) fn take_handover(&mut self, idx: usize, service: &mut dyn Service) {
        let Some(slot) = self.clients.get_mut(idx) else { return };
        let Some(Client { link: Link::Pending(p), doomed, .. }) = slot else { return };
        let taken = match &p.sock {
            Sock::Stream(unix) => p.rx.receive(unix),
            Sock::Packet(_) => Err(HandoverError::BadDescriptor("not a stream connection")),
            Sock::Tcp(_) => Err(HandoverError::BadDescriptor("not a UNIX stream connection")),
        };
        let taken = match taken {
            Ok(Some(taken)) => taken,
            Ok(None) => return,
            Err(e) => {
                *doomed = Some(Gone::Handover(e));
                return;
            }
        };
        let Some(mut client) = slot.take() else { return };
        let Link::Pending(pending) = client.link else { return };
        let Pending { sock, held: Held { buf: held, .. }, .. } = *pending;
        let handover = match taken {
            Taken::Relay(first) => {
                if self.verbose {
                    say(format_args!(
                        "client {idx}: no socket handed over, relaying in {} mode",
                        self.mode
                    ));
                }
                match self.relayed_link(sock, &first) {
                    Ok(link) => client.link = link,
                    Err(gone) => {
                        // The slot is empty already: `end` logs and tells the service.
                        self.end(idx, gone, service);
                        return;
                    }
                }
                let echoed = matches!(client.link, Link::Echo(_));
                if let Some(slot) = self.clients.get_mut(idx) {
                    *slot = Some(client);
                }
                // An echo has its first bytes in its buffer, and nothing to be sent.
                if !echoed {
                    self.replay(idx, &held);
                    self.feed_relay(idx, &first, service);
                }
                return;
            }
            Taken::Direct(handover) => handover,
        };
        let mut unix = sock;
        let _ = unix.deregister(self.poll.registry());
        drop(unix);
        if self.verbose {
            say(format_args!(
                "client {idx}: socket of {} handed over ({} early bytes)",
                handover.value("REMOTE_ADDR").unwrap_or("?"),
                handover.early().len()
            ));
        }
        match self.endpoint(idx, &handover) {
            Ok(ep) => client.link = Link::Direct(Box::new(Direct { ep, closing_since: None })),
            Err(gone) => {
                // The slot is empty already: `end` logs and tells the service.
                self.end(idx, gone, service);
                return;
            }
        }
        if let Some(slot) = self.clients.get_mut(idx) {
            *slot = Some(client);
        }
        self.replay(idx, &held);
        let mut clients = Clients { slots: &mut self.clients, dirty: &mut self.dirty };
        service.context(idx, handover.lines(), &mut clients);
    }

    /// The WebSocket endpoint on a handed-over socket, registered under `idx`.
    pub(super) fn endpoint(
        &mut self,
        idx: usize,
        handover: &direct::Handover,
    ) -> Result<Endpoint<mio::net::TcpStream>, Gone> {
        let io_gone = |op, e| Gone::Sock(SockError::Io(op, e));
        // A duplicate: the record (its lines go to the service next) stays whole; the
        // original descriptor is closed with it.
        let fd = handover.client.try_clone().map_err(|e| io_gone("dup", e))?;
        let tcp = std::net::TcpStream::from(fd);
        tcp.set_nonblocking(true).map_err(|e| io_gone("fcntl", e))?;
        let mut tcp = mio::net::TcpStream::from_std(tcp);
        self.poll
            .registry()
            .register(&mut tcp, Token(idx), Interest::READABLE)
            .map_err(|e| io_gone("poll register", e))?;
        let limits = direct::Limits {
            max_message: self.limits.max_message,
            max_queue: self.limits.max_queue,
            read_len: READ_LEN,
        };
        Endpoint::new(tcp, handover.early(), limits).map_err(Gone::Handover)
    }

    /// Queues the messages held for client `idx` before its kind was known.
    pub(super) fn replay(&mut self, idx: usize, held: &[u8]) {
        let Some(Some(client)) = self.clients.get_mut(idx) else { return };
        for (kind, data) in held_messages(held) {
            if !client.queue(kind, data) {
                break;
            }
        }
    }

    /// Reads relayed client `idx` while it wants to and the budget lasts, handing the events
    /// to the service.
    pub(super) fn read_relay(&mut self, idx: usize, service: &mut dyn Service) {
        let pause_at = self.limits.pause_at;
        let mut budget = TURN_BUDGET;
        while let Some(Some(client)) = self.clients.get_mut(idx) {
            if !client.wants_read(pause_at) {
                break;
            }
            let Link::Relay(relay) = &mut client.link else { break };
            let Some(mut input) = relay.input.take() else { break };
            if budget == 0 {
                relay.input = Some(input);
                self.again.push(idx);
                break;
            }
            budget -= 1;
            let n = match relay.sock.read(&mut input.buf) {
                Ok(Some(0)) => {
                    relay.eof = true;
                    relay.input = Some(input);
                    break;
                }
                Ok(Some(n)) => n,
                Ok(None) => {
                    relay.input = Some(input);
                    break;
                }
                Err(e) => {
                    relay.input = Some(input);
                    client.doomed = Some(Gone::Sock(e));
                    break;
                }
            };
            let data = input.buf.get(..n).unwrap_or_default();
            let more = self.dispatch_relay(idx, &mut input.decoder, data, service);
            if let Some(Some(Client { link: Link::Relay(relay), .. })) = self.clients.get_mut(idx) {
                relay.input = Some(input);
            }
            if !more {
                break;
            }
        }
    }

    /// Hands `data`, read from relayed client `idx`, to the service (its first bytes, read
    /// with the hand-over check).
    pub(super) fn feed_relay(&mut self, idx: usize, data: &[u8], service: &mut dyn Service) {
        let Some(Some(Client { link: Link::Relay(relay), .. })) = self.clients.get_mut(idx) else {
            return;
        };
        let Some(mut input) = relay.input.take() else { return };
        self.dispatch_relay(idx, &mut input.decoder, data, service);
        if let Some(Some(Client { link: Link::Relay(relay), .. })) = self.clients.get_mut(idx) {
            relay.input = Some(input);
        }
    }

    /// Decodes `data` of relayed client `idx` and hands the events to the service; `false`
    /// when the client is not to be read any more.
    pub(super) fn dispatch_relay(
        &mut self,
        idx: usize,
        decoder: &mut Decoder,
        data: &[u8],
        service: &mut dyn Service,
    ) -> bool {
        let mut clients = Clients { slots: &mut self.clients, dirty: &mut self.dirty };
        let mut close_payload = None;
        let result = decoder.feed(data, &mut |event| match event {
            Event::Context(c) => service.context(idx, c, &mut clients),
            Event::Message(kind, m) => service.message(idx, kind, m, &mut clients),
            Event::Close(p) => close_payload = Some(heapless::Vec::<u8, 125>::from_slice(p)),
        });
        let Some(Some(client)) = self.clients.get_mut(idx) else { return false };
        let Link::Relay(relay) = &mut client.link else { return false };
        if let Some(payload) = close_payload {
            // Answer with the same code (RFC 6455 §5.5.1: echo the status code).
            let code = payload.ok().and_then(|p| p.get(..2).map(<[u8]>::to_vec));
            let _ = relay.out.push_close(code.as_deref().unwrap_or_default());
            client.closing = Some(Gone::Closed);
            self.dirty.push(idx);
        }
        if let Err(e) = result {
            if matches!(e, DecodeError::TooBig(_)) && client.doomed.is_none() {
                let _ = relay.out.push_close(&CLOSE_TOO_BIG);
                client.closing = Some(Gone::Decode(e));
                self.dirty.push(idx);
            } else {
                client.doomed = Some(Gone::Decode(e));
            }
            return false;
        }
        true
    }

    /// Direct client `idx`'s turn: hands the messages read to the service while its queue
    /// has room for answers, and reads while it wants to and the budget lasts.
    pub(super) fn read_direct(&mut self, idx: usize, service: &mut dyn Service) {
        let pause_at = self.limits.pause_at;
        let mut budget = TURN_BUDGET;
        loop {
            // Decoding makes answers (pongs, closes, the service's): only while there is room,
            // made by writing what waits first, so a client that reads goes on in this turn.
            loop {
                let Some(Some(client)) = self.clients.get_mut(idx) else { return };
                if client.doomed.is_none() && client.backpressured(pause_at) {
                    client.write();
                }
                if client.doomed.is_some() || client.backpressured(pause_at) {
                    break;
                }
                let Link::Direct(d) = &mut client.link else { return };
                let Some((incoming, _)) = d.ep.next_incoming() else { break };
                let kind = match incoming {
                    Incoming::Message(kind, data) => {
                        // The message is lent by the endpoint, which the service may answer
                        // on: it goes through the scratch buffer.
                        self.scratch.clear();
                        if self.scratch.try_reserve(data.len()).is_err() {
                            client.doomed = Some(Gone::Decode(DecodeError::NoMemory));
                            break;
                        }
                        self.scratch.extend_from_slice(data);
                        message_kind(kind)
                    }
                    Incoming::Closed(_) => {
                        // The endpoint answered; a reason given before stays.
                        client.closing.get_or_insert(Gone::Closed);
                        continue;
                    }
                    Incoming::Failed(e) => {
                        client.closing = Some(Gone::Protocol(e));
                        continue;
                    }
                };
                let mut clients = Clients { slots: &mut self.clients, dirty: &mut self.dirty };
                service.message(idx, kind, &self.scratch, &mut clients);
            }
            self.scratch.clear();
            self.scratch.shrink_to(KEEP_SCRATCH);
            let Some(Some(client)) = self.clients.get_mut(idx) else { return };
            if !client.wants_read(pause_at) {
                break;
            }
            let Link::Direct(d) = &mut client.link else { return };
            if budget == 0 {
                self.again.push(idx);
                break;
            }
            budget -= 1;
            match d.ep.read() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    client.doomed = Some(Gone::Sock(sock_error("read", e)));
                    break;
                }
            }
        }
    }
}
