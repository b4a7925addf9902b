//! The embedded DNS server of user-defined bridge networks, as Podman's aardvark-dns:
//! one server per network on its gateway addresses, port 53, UDP and TCP, in the
//! daemon's namespace, on the daemon's tokio runtime. A container's name, aliases and
//! short id resolve to its addresses while it runs, for the containers that share a
//! network with it: the asker is known by the query's source address on the served
//! network, and sees every served network it is attached to (the host, or any other
//! source, sees the served network alone). Every other name goes to the host's
//! resolvers. Each query reads the networks from the store and asks the engine (its
//! `Running` callback) whether the matched containers run, so a stopped container drops
//! out at once.

mod forward;
pub mod names;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_server::proto::rr::rdata::{A, AAAA, PTR};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};

pub use forward::upstreams;

use crate::error::{Error, Result};
use crate::record::Network;
use crate::store::NetworkStore;

/// Whether a container (by id) runs now; asked on every lookup that matches it.
pub type Running = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The time to live of the network's own answers, as Docker's.
const TTL: u32 = 600;
/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The servers of the daemon's networks, by network id.
#[derive(Default)]
pub struct Servers {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    context: Option<(tokio::runtime::Handle, Arc<Shared>)>,
    serving: HashMap<String, Serving>,
}

/// What every server reads: the networks, the containers' states, the resolvers.
struct Shared {
    store: Arc<NetworkStore>,
    running: Running,
    upstreams: Vec<SocketAddr>,
    /// The networks served now, whose names their containers resolve (not, say, the
    /// default bridge's, as Docker's).
    served: Mutex<HashSet<String>>,
}

struct Serving {
    addresses: Vec<IpAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        // The server owns its sockets: they close with it.
        self.task.abort();
    }
}

impl Servers {
    /// From now on [`Servers::start`] serves, on the tokio runtime of the caller's
    /// context, forwarding to `upstreams`. Before, it does nothing.
    pub fn enable(
        &self,
        store: Arc<NetworkStore>,
        running: Running,
        upstreams: Vec<SocketAddr>,
    ) -> Result<()> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::System(format!("embedded DNS needs a tokio runtime: {e}")))?;
        let mut inner = self.lock();
        let shared = Arc::new(Shared {
            store,
            running,
            upstreams,
            served: Mutex::new(inner.serving.keys().cloned().collect()),
        });
        inner.context = Some((handle, shared));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `net` on its gateways (IPv6 too when it has it), replacing a server it had;
    /// names of an internal network are not forwarded. The sockets are bound before this
    /// returns, so an error is the caller's to see.
    pub fn start(&self, net: &Network) -> Result<()> {
        let mut inner = self.lock();
        let Some((handle, shared)) = inner.context.clone() else {
            return Ok(());
        };
        inner.serving.remove(&net.id);
        shared.served().remove(&net.id);
        let addresses: Vec<IpAddr> = [net.ipv4.as_ref(), net.ipv6.as_ref()]
            .into_iter()
            .flatten()
            .map(|f| f.pool.gateway)
            .collect();
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for ip in &addresses {
            let at = SocketAddr::new(*ip, 53);
            udp.push(bind(at, Type::DGRAM)?);
            tcp.push(bind(at, Type::STREAM)?);
        }
        let _entered = handle.enter();
        let handler = Handler {
            network: net.id.clone(),
            shared: shared.clone(),
            forward: !net.internal,
        };
        let mut server = Server::new(handler);
        for s in udp {
            let s = tokio::net::UdpSocket::from_std(s.into())
                .map_err(|e| Error::System(format!("embedded DNS of {}: {e}", net.name)))?;
            server.register_socket(s);
        }
        for s in tcp {
            let s = tokio::net::TcpListener::from_std(s.into())
                .map_err(|e| Error::System(format!("embedded DNS of {}: {e}", net.name)))?;
            server.register_listener(s, TCP_IDLE, 64);
        }
        let name = net.name.clone();
        let task = handle.spawn(async move {
            if let Err(e) = server.block_until_done().await {
                tracing::error!(network = %name, error = %e, "embedded DNS stopped");
            }
        });
        tracing::info!(network = %net.name, ?addresses, "embedded DNS listening");
        shared.served().insert(net.id.clone());
        inner
            .serving
            .insert(net.id.clone(), Serving { addresses, task });
        Ok(())
    }

    /// Stops serving network `id` (nothing if it was not served).
    pub fn stop(&self, id: &str) {
        let mut inner = self.lock();
        inner.serving.remove(id);
        if let Some((_, shared)) = inner.context.as_ref() {
            shared.served().remove(id);
        }
    }

    /// The addresses network `id` is served on; empty when it is not.
    pub fn addresses(&self, id: &str) -> Vec<IpAddr> {
        self.lock()
            .serving
            .get(id)
            .map(|s| s.addresses.clone())
            .unwrap_or_default()
    }
}

/// A listening socket on `at` (port 53 of a gateway). Bound even while the address is
/// still tentative (IPv6 duplicate address detection on a bridge without ports yet).
fn bind(at: SocketAddr, typ: Type) -> Result<Socket> {
    let what = if typ == Type::DGRAM { "udp" } else { "tcp" };
    let fail = |op: &str, e: std::io::Error| {
        Error::System(format!("embedded DNS: {op} {what} socket on {at}: {e}"))
    };
    let proto = if typ == Type::DGRAM {
        Protocol::UDP
    } else {
        Protocol::TCP
    };
    let socket =
        Socket::new(Domain::for_address(at), typ, Some(proto)).map_err(|e| fail("create", e))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| fail("set SO_REUSEADDR on", e))?;
    socket
        .set_freebind_v4(true)
        .map_err(|e| fail("set IP_FREEBIND on", e))?;
    if at.is_ipv6() {
        socket
            .set_only_v6(true)
            .map_err(|e| fail("set IPV6_V6ONLY on", e))?;
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| fail("set up", e))?;
    socket.bind(&at.into()).map_err(|e| fail("bind", e))?;
    if typ == Type::STREAM {
        socket.listen(128).map_err(|e| fail("listen on", e))?;
    }
    Ok(socket)
}

struct Handler {
    network: String,
    shared: Arc<Shared>,
    /// An internal network's names stay inside: nothing is sent to the host's resolvers.
    forward: bool,
}

impl Shared {
    fn served(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.served.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The records answering `query`, sent from `source` to the server of `network`,
    /// from the names its asker may resolve; None when the name is none of them (it is
    /// then forwarded).
    fn answer(&self, network: &str, source: IpAddr, query: &Query) -> Option<Vec<Record>> {
        if query.query_class() != DNSClass::IN {
            return None;
        }
        let networks = self.store.list().ok()?;
        let scope = {
            let served = self.served();
            let has_names = |n: &Network| served.contains(&n.id);
            names::Scope::asked_from(&networks, network, source, &has_names)?
        };
        let running = |id: &str| (self.running)(id);
        let name = query.name().to_ascii();
        let qtype = query.query_type();
        if qtype == RecordType::PTR {
            let ip = names::arpa_address(&name)?;
            let target = Name::from_ascii(scope.reverse(ip, &running)?).ok()?;
            let record = Record::from_rdata(query.name().clone(), TTL, RData::PTR(PTR(target)));
            return Some(vec![record]);
        }
        let addresses = scope.lookup(&name, &running)?;
        Some(
            addresses
                .into_iter()
                .filter_map(|ip| {
                    let rdata = match ip {
                        IpAddr::V4(v4) if matches!(qtype, RecordType::A | RecordType::ANY) => {
                            RData::A(A(v4))
                        }
                        IpAddr::V6(v6) if matches!(qtype, RecordType::AAAA | RecordType::ANY) => {
                            RData::AAAA(AAAA(v6))
                        }
                        // The name exists: other types get an empty answer, not the
                        // host's resolvers' idea of it.
                        _ => return None,
                    };
                    Some(Record::from_rdata(query.name().clone(), TTL, rdata))
                })
                .collect(),
        )
    }
}

#[async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let md = &request.metadata;
        if md.message_type != MessageType::Query || md.op_code != OpCode::Query {
            return error(request, response, ResponseCode::NotImp).await;
        }
        let query = match request.request_info() {
            Ok(info) => info.query.original().clone(),
            Err(_) => return error(request, response, ResponseCode::FormErr).await,
        };
        let shared = self.shared.clone();
        let network = self.network.clone();
        let source = request.src().ip();
        // The store and the containers' shims are blocking to ask.
        let local =
            tokio::task::spawn_blocking(move || shared.answer(&network, source, &query)).await;
        let edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            e
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = edns.as_ref() {
            builder.edns(e);
        }
        let sent = match local {
            Ok(Some(records)) => {
                let mut meta = Metadata::response_from_request(md);
                meta.authoritative = true;
                meta.recursion_available = true;
                let r = builder.build(meta, records.iter(), [], [], []);
                response.send_response(r).await
            }
            _ => {
                let tcp = request.protocol() == hickory_server::net::xfer::Protocol::Tcp;
                let upstreams = match self.forward {
                    true => &self.shared.upstreams[..],
                    false => &[],
                };
                match forward::forward(request.as_slice(), tcp, upstreams).await {
                    Some(answer) => {
                        let answer: Message = answer;
                        let mut meta = answer.metadata;
                        meta.id = md.id;
                        let r = builder.build(
                            meta,
                            answer.answers.iter(),
                            answer.authorities.iter(),
                            [],
                            answer.additionals.iter(),
                        );
                        response.send_response(r).await
                    }
                    None => {
                        let r = builder.error_msg(md, ResponseCode::ServFail);
                        response.send_response(r).await
                    }
                }
            }
        };
        sent.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "embedded DNS: answer not sent");
            failed(md)
        })
    }
}

async fn error<R: ResponseHandler>(
    request: &Request,
    mut response: R,
    code: ResponseCode,
) -> ResponseInfo {
    let r =
        MessageResponseBuilder::from_message_request(request).error_msg(&request.metadata, code);
    response
        .send_response(r)
        .await
        .unwrap_or_else(|_| failed(&request.metadata))
}

fn failed(md: &Metadata) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(md);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}
