//! A real 3-member etcd cluster (Debian's `etcd-server`) for fault tests:
//! random loopback ports, temp data dirs, every process killed on drop.
//! Members can be killed (SIGKILL) and restarted, frozen (SIGSTOP) and
//! thawed (SIGCONT), and partitioned from the other two while clients still
//! reach them. A test that cannot start the cluster fails; it never skips.
//!
//! # How a partition works
//!
//! Loopback has no firewall a test may rely on, so peer traffic runs
//! through TCP proxies this harness owns. Member `i` listens for peers on
//! a private port, but advertises the port of its proxy: every connection
//! another member opens *to* `i` passes through proxy `i`. That alone cannot
//! cut `i` off, because rafthttp also streams messages back over
//! connections the *receiver* opened (a member GETs `/raft/stream/...` from
//! each peer and reads that peer's messages from the response). So each
//! proxy also learns who is calling: every rafthttp request carries the
//! sender's member id in `X-Server-From`, which the proxy reads from the
//! first request head of a connection. Partitioning `i` then stops every
//! connection to proxy `i` and every connection *from* `i` at the others,
//! in both directions, and new ones are accepted and held silently, the
//! way a dropped network holds them (no reset, no EOF), so etcd notices
//! the loss only through its own heartbeats and election timeouts. Client
//! ports are never proxied: clients keep reaching the partitioned member,
//! which is exactly the case a client must not be fooled by. Healing closes
//! the held connections, and the members dial again.

use super::free_port;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";
pub const MEMBERS: usize = 3;

/// What a member is doing, as the test made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Up,
    Killed,
    Stopped,
    Partitioned,
}

struct Member {
    name: String,
    client_port: u16,
    /// Where etcd really listens for peers (only its proxy connects here).
    peer_port: u16,
    child: Option<Child>,
    state: State,
}

pub struct Cluster {
    dir: tempfile::TempDir,
    token: String,
    members: Vec<Member>,
    net: Arc<Net>,
    /// The advertised peer port of each member: its proxy's.
    proxy_ports: Vec<u16>,
    /// `user:password` for etcdctl once auth is enabled.
    auth: Option<String>,
}

impl Cluster {
    /// Starts three members and waits until each serves a linearizable
    /// read (so a leader is elected and every member knows it).
    pub fn start() -> Cluster {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server (the README's test command does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let net = Arc::new(Net::default());
        let mut proxy_ports = Vec::new();
        for i in 0..MEMBERS {
            // Bound here and held, so these ports cannot be lost to a race.
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a proxy port");
            proxy_ports.push(listener.local_addr().unwrap().port());
            net.state.lock().unwrap().upstream.push(0);
            let net = net.clone();
            std::thread::spawn(move || proxy(listener, i, net));
        }
        let token = format!("unitgen-test-{}-{}", std::process::id(), proxy_ports[0]);
        let mut cluster = Cluster {
            dir,
            token,
            members: (0..MEMBERS)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client_port: 0,
                    peer_port: 0,
                    child: None,
                    state: State::Up,
                })
                .collect(),
            net,
            proxy_ports,
            auth: None,
        };
        for attempt in 0..5 {
            for i in 0..MEMBERS {
                let m = &mut cluster.members[i];
                m.client_port = free_port();
                m.peer_port = free_port();
                cluster.net.state.lock().unwrap().upstream[i] = m.peer_port;
                let _ = std::fs::remove_dir_all(cluster.data_dir(i));
            }
            for i in 0..MEMBERS {
                cluster.spawn(i);
            }
            if cluster.wait_healthy(&[0, 1, 2], Duration::from_secs(30)) {
                cluster.learn_ids();
                return cluster;
            }
            eprintln!(
                "etcd cluster attempt {attempt} failed; logs:\n{}",
                cluster.logs()
            );
            for i in 0..MEMBERS {
                cluster.reap(i);
            }
        }
        panic!("the etcd cluster did not start; logs:\n{}", cluster.logs());
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client URL, member 0 first.
    pub fn endpoints(&self) -> Vec<String> {
        (0..MEMBERS).map(|i| self.endpoint(i)).collect()
    }

    pub fn state(&self, i: usize) -> State {
        self.members[i].state
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// The last lines of every member's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..MEMBERS {
            let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            out += &format!("--- {} ---\n", self.members[i].name);
            out += &lines[lines.len().saturating_sub(15)..].join("\n");
            out.push('\n');
        }
        out
    }

    fn spawn(&mut self, i: usize) {
        let cluster: Vec<String> = (0..MEMBERS)
            .map(|j| {
                format!(
                    "{}=http://127.0.0.1:{}",
                    self.members[j].name, self.proxy_ports[j]
                )
            })
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let child = Command::new(ETCD)
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", self.data_dir(i).display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!(
                "--listen-peer-urls=http://127.0.0.1:{}",
                m.peer_port
            ))
            // Peers reach this member only through its proxy.
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                self.proxy_ports[i]
            ))
            .arg(format!("--initial-cluster={}", cluster.join(",")))
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token={}", self.token))
            // Pre-vote keeps a healed member from forcing a needless
            // election (it is on by default from etcd 3.5 on).
            .arg("--pre-vote=true")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let m = &mut self.members[i];
        m.child = Some(child);
        m.state = State::Up;
    }

    /// Kills member `i` (if running) and waits for it.
    fn reap(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether member `i` still runs (it exits at once if a port was taken).
    fn running(&mut self, i: usize) -> bool {
        match self.members[i].child.as_mut() {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    fn wait_healthy(&mut self, members: &[usize], wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut pending: Vec<usize> = members.to_vec();
        while Instant::now() < deadline {
            for &i in members {
                if !self.running(i) {
                    eprintln!("etcd {} exited", self.members[i].name);
                    return false;
                }
            }
            pending.retain(|&i| !self.ctl_on(&[i], &["endpoint", "health"]).0);
            if pending.is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Maps the member ids rafthttp sends in `X-Server-From` to members.
    fn learn_ids(&mut self) {
        let out = self.ctl(&["member", "list", "--write-out=json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("member list json");
        let mut ids = HashMap::new();
        for member in v["members"].as_array().expect("members") {
            let id = member["ID"].as_u64().expect("member ID");
            let name = member["name"].as_str().expect("member name");
            let i = self
                .members
                .iter()
                .position(|m| m.name == name)
                .expect("a known member");
            ids.insert(id, i);
        }
        assert_eq!(ids.len(), MEMBERS, "{out}");
        self.net.state.lock().unwrap().ids = ids;
    }

    /// etcdctl against the given members only.
    fn ctl_on(&self, members: &[usize], args: &[&str]) -> (bool, String) {
        let endpoints: Vec<String> = members.iter().map(|&i| self.endpoint(i)).collect();
        let mut cmd = Command::new(ETCDCTL);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg("--dial-timeout=1s")
            .arg("--command-timeout=3s");
        if let Some(auth) = &self.auth {
            cmd.arg(format!("--user={auth}"));
        }
        let out = cmd
            .args(args)
            .output()
            .expect("run etcdctl (package etcd-client)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Members a client can rely on now: up and not partitioned.
    fn healthy_members(&self) -> Vec<usize> {
        (0..MEMBERS)
            .filter(|&i| self.members[i].state == State::Up)
            .collect()
    }

    /// etcdctl against the healthy members, retried for a few seconds (a
    /// fault the test just made can leave the cluster electing a leader);
    /// panics with its output if it never succeeds.
    pub fn ctl(&self, args: &[&str]) -> String {
        let members = self.healthy_members();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (ok, text) = self.ctl_on(&members, args);
            if ok {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "etcdctl {args:?} failed: {text}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn put(&self, key: &str, value: &str) {
        // `--` so values starting with `-` are not read as flags.
        self.ctl(&["put", "--", key, value]);
    }

    pub fn del(&self, key: &str) {
        self.ctl(&["del", "--", key]);
    }

    /// Enables authentication with a `root` user and `user`, who may read
    /// everything.
    pub fn enable_auth(&mut self, user: &str, password: &str) {
        super::etcd::enable_auth(|args| drop(self.ctl(args)), user, password);
        self.auth = Some(super::etcd::ROOT_AUTH.into());
    }

    /// The value member `i` holds for `key`, read locally (serializable):
    /// what a client that trusted this member would be told.
    pub fn local_value(&self, i: usize, key: &str) -> Option<String> {
        let (ok, text) = self.ctl_on(
            &[i],
            &["get", "--consistency=s", "--print-value-only", "--", key],
        );
        assert!(ok, "serializable get on {}: {text}", self.endpoint(i));
        let value = text.trim_end_matches('\n');
        (!value.is_empty()).then(|| value.to_owned())
    }

    /// The leader member `i` believes in, if any (`Status` is answered by
    /// the member alone, without a quorum).
    pub fn leader_seen_by(&self, i: usize) -> Option<usize> {
        let (ok, text) = self.ctl_on(&[i], &["endpoint", "status", "--write-out=json"]);
        if !ok {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
        let leader = v[0]["Status"]["leader"].as_u64()?;
        self.net.state.lock().unwrap().ids.get(&leader).copied()
    }

    /// The current leader, as the healthy members agree on it.
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let seen: Vec<Option<usize>> = self
                .healthy_members()
                .iter()
                .map(|&i| self.leader_seen_by(i))
                .collect();
            if let Some(Some(l)) = seen.first()
                && seen.iter().all(|s| *s == Some(*l))
                && self.members[*l].state == State::Up
            {
                return *l;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader: {seen:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the healthy members have elected a leader among
    /// themselves and serve linearizable reads again.
    pub fn wait_quorum(&mut self) {
        let members = self.healthy_members();
        assert!(
            self.wait_healthy(&members, Duration::from_secs(20)),
            "members {members:?} did not serve again:\n{}",
            self.logs()
        );
        self.leader();
    }

    /// Waits until member `i` knows it has no leader, so it answers
    /// "no leader" to a client that requires one.
    pub fn wait_no_leader(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.leader_seen_by(i).is_some() {
            assert!(
                Instant::now() < deadline,
                "member {i} still sees a leader:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the member's ports refuse connections at once.
    pub fn kill(&mut self, i: usize) {
        if self.members[i].state == State::Stopped {
            self.signal(i, "CONT");
        }
        self.reap(i);
        self.members[i].state = State::Killed;
    }

    /// Starts a killed member again on the same ports and data, and waits
    /// until it serves.
    pub fn restart(&mut self, i: usize) {
        assert_eq!(self.members[i].state, State::Killed, "restart after kill");
        self.spawn(i);
        assert!(
            self.wait_healthy(&[i], Duration::from_secs(30)),
            "member {i} did not restart:\n{}",
            self.logs()
        );
    }

    /// Starts every killed member again at once (one alone cannot serve
    /// without a quorum), and waits until they all serve.
    pub fn restart_all(&mut self) {
        let killed: Vec<usize> = (0..MEMBERS)
            .filter(|&i| self.members[i].state == State::Killed)
            .collect();
        for &i in &killed {
            self.spawn(i);
        }
        assert!(
            self.wait_healthy(&killed, Duration::from_secs(30)),
            "members {killed:?} did not restart:\n{}",
            self.logs()
        );
    }

    /// SIGSTOP: the member's sockets still accept connections (the kernel
    /// completes the handshake) but nothing ever answers: a hung member.
    pub fn stop(&mut self, i: usize) {
        self.signal(i, "STOP");
        self.members[i].state = State::Stopped;
    }

    /// SIGCONT after `stop`.
    pub fn cont(&mut self, i: usize) {
        self.signal(i, "CONT");
        self.members[i].state = State::Up;
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.members[i]
            .child
            .as_ref()
            .expect("a running member")
            .id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Cuts member `i` off from the other two (both directions); clients
    /// still reach it.
    pub fn partition(&mut self, i: usize) {
        self.net.partition(i, true);
        self.members[i].state = State::Partitioned;
    }

    /// Undoes `partition`.
    pub fn heal(&mut self, i: usize) {
        self.net.partition(i, false);
        self.members[i].state = State::Up;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..MEMBERS {
            if self.members[i].state == State::Stopped {
                self.signal(i, "CONT");
            }
            self.reap(i);
        }
        self.net.shut_down(&self.proxy_ports);
    }
}

/// What every proxy shares: who is partitioned, and every connection.
#[derive(Default)]
struct Net {
    state: Mutex<NetState>,
}

#[derive(Default)]
struct NetState {
    /// Real peer port of each member.
    upstream: Vec<u16>,
    /// rafthttp member id → member index.
    ids: HashMap<u64, usize>,
    partitioned: HashSet<usize>,
    links: Vec<Link>,
    closed: bool,
}

/// One proxied (or held) connection to member `to`.
struct Link {
    /// The sender's member id from `X-Server-From` (hex), if it sent one.
    from: Option<u64>,
    to: usize,
    sockets: Vec<TcpStream>,
    /// Set when the partition cuts this link: the pumps forward nothing
    /// more, and the sockets stay open until healed.
    cut: Arc<AtomicBool>,
    /// Pumps still running (0 and not cut: finished, can be dropped).
    pumps: Arc<AtomicUsize>,
}

impl NetState {
    fn sender(&self, from: Option<u64>) -> Option<usize> {
        from.and_then(|id| self.ids.get(&id).copied())
    }

    fn blocked(&self, from: Option<u64>, to: usize) -> bool {
        self.partitioned.contains(&to)
            || self
                .sender(from)
                .is_some_and(|i| self.partitioned.contains(&i))
    }
}

impl Net {
    fn partition(&self, member: usize, cut: bool) {
        let mut state = self.state.lock().unwrap();
        if cut {
            state.partitioned.insert(member);
            let blocked: Vec<bool> = state
                .links
                .iter()
                .map(|l| state.blocked(l.from, l.to))
                .collect();
            for (link, blocked) in state.links.iter().zip(blocked) {
                if blocked {
                    link.cut.store(true, Ordering::SeqCst);
                }
            }
        } else {
            state.partitioned.remove(&member);
            // Close what the partition held; the members dial again.
            state.links.retain(|l| {
                let held = l.cut.load(Ordering::SeqCst);
                if held {
                    for s in &l.sockets {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
                !held
            });
        }
    }

    fn shut_down(&self, ports: &[u16]) {
        let mut state = self.state.lock().unwrap();
        state.closed = true;
        for l in state.links.drain(..) {
            for s in &l.sockets {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        drop(state);
        // Wake each accept loop so it sees `closed` and ends.
        for port in ports {
            let _ = TcpStream::connect(("127.0.0.1", *port));
        }
    }
}

/// Accepts peer connections to member `to` until the cluster is dropped.
fn proxy(listener: TcpListener, to: usize, net: Arc<Net>) {
    for conn in listener.incoming() {
        if net.state.lock().unwrap().closed {
            return;
        }
        let Ok(conn) = conn else { continue };
        let net = net.clone();
        std::thread::spawn(move || relay(conn, to, &net));
    }
}

/// Reads the first request head (to learn the sender), then either holds
/// the connection (partitioned) or relays it to the member.
fn relay(client: TcpStream, to: usize, net: &Net) {
    let _ = client.set_nodelay(true);
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match (&client).read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = client.set_read_timeout(None);
    let from = server_from(&head);

    let port = net.state.lock().unwrap().upstream[to];
    let upstream = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    );
    let mut state = net.state.lock().unwrap();
    if state.closed {
        return;
    }
    state
        .links
        .retain(|l| l.cut.load(Ordering::SeqCst) || l.pumps.load(Ordering::SeqCst) > 0);
    let cut = Arc::new(AtomicBool::new(false));
    let pumps = Arc::new(AtomicUsize::new(0));
    if state.blocked(from, to) {
        // A partition drops packets: hold the connection, answer nothing.
        cut.store(true, Ordering::SeqCst);
        state.links.push(Link {
            from,
            to,
            sockets: vec![client],
            cut,
            pumps,
        });
        return;
    }
    // The member is down (killed or restarting): close, as it would.
    let Ok(upstream) = upstream else { return };
    let _ = upstream.set_nodelay(true);
    if (&upstream).write_all(&head).is_err() {
        return;
    }
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    ) else {
        return;
    };
    pumps.store(2, Ordering::SeqCst);
    for (src, dst) in [(c2, u2), (u3, c3)] {
        let (cut, pumps) = (cut.clone(), pumps.clone());
        std::thread::spawn(move || {
            pump(src, dst, &cut);
            pumps.fetch_sub(1, Ordering::SeqCst);
        });
    }
    state.links.push(Link {
        from,
        to,
        sockets: vec![client, upstream],
        cut,
        pumps,
    });
}

/// Copies `src` to `dst` until EOF, an error, or a cut (then nothing more
/// is forwarded and nothing is closed: the partition holds the sockets).
fn pump(mut src: TcpStream, mut dst: TcpStream, cut: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => {
                if !cut.load(Ordering::SeqCst) {
                    let _ = dst.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) || dst.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// The `X-Server-From` member id (hex) of an HTTP request head.
fn server_from(head: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(head);
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("x-server-from")
            .then(|| u64::from_str_radix(value.trim(), 16).ok())?
    })
}
