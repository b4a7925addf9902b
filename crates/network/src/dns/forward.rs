//! Names that are not the network's go to the host's resolvers, the nameservers of the
//! daemon's /etc/resolv.conf (loopback ones too: the daemon sends the query from its
//! own namespace). Each is tried in turn, over UDP with a fallback to TCP when the
//! answer is truncated; the first answer wins, whatever its code (NXDOMAIN included).

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// How long one resolver has to answer before the next is asked.
const PER_SERVER: Duration = Duration::from_secs(2);

/// The resolvers in the text of a resolv.conf, on port 53. Link-local IPv6 servers with
/// a zone (`fe80::1%eth0`) are left out: a zone means nothing to the daemon's sockets.
pub fn upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The first answer of `servers` to the wire-format `query`; None when none answered.
pub async fn forward(query: &[u8], tcp: bool, servers: &[SocketAddr]) -> Option<Message> {
    if query.len() < 12 {
        return None;
    }
    for server in servers {
        // A fresh id per upstream query, so an answer is only taken for the question.
        let id = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u16;
        let mut wire = query.to_vec();
        wire[..2].copy_from_slice(&id.to_be_bytes());
        let answer = match tcp {
            true => over_tcp(&wire, *server).await,
            false => match over_udp(&wire, *server, id).await {
                Some(m) if m.metadata.truncation => over_tcp(&wire, *server).await,
                other => other,
            },
        };
        match answer {
            Some(m) if m.metadata.id == id => return Some(m),
            Some(_) => tracing::debug!(%server, "resolver answered with another id"),
            None => tracing::debug!(%server, "resolver did not answer"),
        }
    }
    None
}

async fn over_udp(wire: &[u8], server: SocketAddr, id: u16) -> Option<Message> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().ok()?,
        SocketAddr::V6(_) => "[::]:0".parse().ok()?,
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    // Connected: only the server's datagrams are received.
    socket.connect(server).await.ok()?;
    socket.send(wire).await.ok()?;
    let mut buf = vec![0u8; 65535];
    timeout(PER_SERVER, async {
        loop {
            let n = socket.recv(&mut buf).await.ok()?;
            if n >= 2 && buf[..2] == id.to_be_bytes() {
                return Message::from_vec(&buf[..n]).ok();
            }
        }
    })
    .await
    .ok()?
}

async fn over_tcp(wire: &[u8], server: SocketAddr) -> Option<Message> {
    timeout(PER_SERVER, async {
        let mut stream = TcpStream::connect(server).await.ok()?;
        let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(wire);
        stream.write_all(&framed).await.ok()?;
        let len = stream.read_u16().await.ok()?;
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.ok()?;
        Message::from_vec(&buf).ok()
    })
    .await
    .ok()?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_of_a_resolv_conf() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.53\n\
                    nameserver  127.0.0.53\nnameserver fd00::53\nnameserver fe80::1%eth0\n\
                    nameserver bogus\noptions ndots:2\n";
        let got: Vec<String> = upstreams(text).iter().map(|s| s.to_string()).collect();
        assert_eq!(got, ["10.0.0.53:53", "127.0.0.53:53", "[fd00::53]:53"]);
        assert!(upstreams("").is_empty());
    }

    #[tokio::test]
    async fn no_server_no_answer_and_a_real_one_answers() {
        let query = {
            let mut m = Message::query();
            m.metadata.id = 7;
            m.add_query(hickory_server::proto::op::Query::query(
                "x.test.".parse().unwrap(),
                hickory_server::proto::rr::RecordType::A,
            ));
            m.to_vec().unwrap()
        };
        assert!(forward(&query, false, &[]).await.is_none());
        // A resolver on loopback that says NXDOMAIN: its answer is relayed as it is.
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            let mut m = Message::from_vec(&buf[..n]).unwrap();
            m.metadata.message_type = hickory_server::proto::op::MessageType::Response;
            m.metadata.response_code = hickory_server::proto::op::ResponseCode::NXDomain;
            server.send_to(&m.to_vec().unwrap(), from).await.unwrap();
        });
        // A first server that refuses (nothing listens on its port) is skipped.
        let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let answer = forward(&query, false, &[dead_addr, addr]).await.unwrap();
        assert_eq!(
            answer.metadata.response_code,
            hickory_server::proto::op::ResponseCode::NXDomain
        );
    }
}
