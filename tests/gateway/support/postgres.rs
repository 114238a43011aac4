//! A throwaway PostgreSQL server for integration tests: its own temp dir, a free loopback
//! port, fsync off. Uses Debian's `/usr/lib/postgresql/<ver>/bin`. Postgres refuses to run
//! as root, so under root the server runs as the unprivileged user `modelgate-pg` (created
//! on first use) via `setpriv`, which execs (unlike `runuser`, which forks), so the child's
//! pid is the postmaster's.
//!
//! All calls block; from async tests call them outside the runtime or via `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

const PG_USER: &str = "modelgate-pg";
const DB_NAME: &str = "modelgate";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const CMD_TIMEOUT: Duration = Duration::from_secs(60);
const PORT_ATTEMPTS: usize = 3;

/// Serialises user creation within this process (other processes are handled by retrying).
static USER_LOCK: Mutex<()> = Mutex::new(());

/// Who runs `initdb`/`postgres`: the current user, or (under root) `modelgate-pg`.
#[derive(Clone, Debug)]
enum RunAs {
    Current,
    User { uid: u32, gid: u32 },
}

pub struct Postgres {
    /// Removed when dropped, after `Drop::drop` has stopped the server.
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: RunAs,
    port: u16,
    child: Option<Child>,
}

impl Postgres {
    /// Initialises a fresh cluster, starts it on a free loopback port and creates the
    /// `modelgate` database.
    pub fn start() -> Result<Postgres, String> {
        let bin = find_bin_dir()?;
        let run_as = if is_root()? {
            ensure_pg_user()?
        } else {
            RunAs::Current
        };
        let dir = make_temp_dir(&run_as)?;
        // From here on, `pg`'s Drop cleans up whatever was started if a step fails.
        let mut pg = Postgres {
            dir,
            bin,
            run_as,
            port: 0,
            child: None,
        };
        pg.initdb()?;

        let mut last_err = String::new();
        for _ in 0..PORT_ATTEMPTS {
            pg.port = free_port()?;
            match pg.spawn_and_wait() {
                Ok(()) => {
                    last_err.clear();
                    break;
                }
                Err(e) => {
                    pg.stop();
                    // Only a port clash is worth another try.
                    if !(e.contains("could not bind") || e.contains("already in use")) {
                        return Err(e);
                    }
                    last_err = e;
                }
            }
        }
        if !last_err.is_empty() {
            return Err(format!(
                "postgres: no free port after {PORT_ATTEMPTS} attempts: {last_err}"
            ));
        }

        pg.psql_db("postgres", &format!("CREATE DATABASE {DB_NAME}"))?;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:PORT/modelgate` (trust auth, no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DB_NAME}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory (e.g. for `pgrep -f`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server log (stdout + stderr of every start).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Fast shutdown (SIGINT), waits up to 10 s, then SIGKILLs the postmaster and its
    /// children. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        // Should equal `pid` (setpriv execs); if not, signal the real postmaster too.
        let extra = self
            .postmaster_pid()
            .filter(|&p| p != pid && self.is_ours(p));

        if matches!(child.try_wait(), Ok(None)) {
            signal("INT", pid);
        }
        if let Some(p) = extra {
            signal("INT", p);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut exited = wait_child(&mut child, deadline);
        if let Some(p) = extra {
            exited &= wait_pid_gone(p, deadline);
        }
        if !exited {
            // Backends would exit on postmaster death anyway, but don't leave it to chance.
            let mut victims = vec![pid];
            victims.extend(extra);
            for p in victims.clone() {
                victims.extend(children_of(p));
            }
            for p in &victims {
                signal("KILL", *p);
            }
            let _ = child.kill();
            let _ = child.wait();
            let deadline = Instant::now() + Duration::from_secs(5);
            for p in &victims {
                wait_pid_gone(*p, deadline);
            }
        }
    }

    /// Starts the server again on the same port and data dir (stopping it first if it is
    /// running) and waits until it accepts connections.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn_and_wait()
    }

    /// Runs `psql -At -c sql` against the `modelgate` database; returns stdout.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_db(DB_NAME, sql)
    }

    fn psql_db(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
        ])
        .arg(self.port.to_string())
        .args(["-U", "postgres", "-d", db, "-c", sql]);
        clean_pg_env(&mut cmd);
        let out = run_bounded(&mut cmd, CMD_TIMEOUT, "psql")?;
        if !out.status.success() {
            return Err(format!(
                "psql failed ({}) for {sql:?}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn initdb(&self) -> Result<(), String> {
        let mut cmd = self.as_pg_user(&self.bin.join("initdb"));
        cmd.arg("-D")
            .arg(self.data_dir())
            // --locale=C: the host's locale may not exist; C works with UTF8.
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
            .arg("--locale=C");
        let out = run_bounded(&mut cmd, CMD_TIMEOUT, "initdb")?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Spawns the postmaster on `self.port` and waits until it accepts connections.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("postgres: open {}: {e}", log_path.display()))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log
            .try_clone()
            .map_err(|e| format!("postgres: dup log fd: {e}"))?;

        let mut cmd = self.as_pg_user(&self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("postgres: spawn {}: {e}", self.bin.display()))?;
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "postgres exited during start-up ({status}) on port {}; log tail:\n{}",
                        self.port,
                        log_tail(&log_path, log_start)
                    ));
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && self.pg_isready()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "postgres not ready on port {} after {}s; log tail:\n{}",
                    self.port,
                    READY_TIMEOUT.as_secs(),
                    log_tail(&log_path, log_start)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn pg_isready(&self) -> bool {
        let mut cmd = Command::new(self.bin.join("pg_isready"));
        cmd.args(["-q", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", "postgres", "-t", "2"]);
        clean_pg_env(&mut cmd);
        matches!(run_bounded(&mut cmd, Duration::from_secs(5), "pg_isready"), Ok(o) if o.status.success())
    }

    /// A command for `program`, run as the pg user when we are root.
    fn as_pg_user(&self, program: &Path) -> Command {
        let mut cmd = match &self.run_as {
            RunAs::Current => Command::new(program),
            RunAs::User { uid, gid } => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                c.env("HOME", self.dir.path())
                    .env("USER", PG_USER)
                    .env("LOGNAME", PG_USER);
                c
            }
        };
        // The caller's cwd (e.g. /root) may not be accessible to the pg user.
        cmd.current_dir(self.dir.path());
        clean_pg_env(&mut cmd);
        cmd
    }

    /// First line of `<data>/postmaster.pid`, if present.
    fn postmaster_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Whether `pid` is a live process whose command line mentions our data dir.
    fn is_ours(&self, pid: u32) -> bool {
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        cmdline.contains(&*self.data_dir().to_string_lossy())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Stop before the TempDir field is dropped (fields drop after this body).
        self.stop();
    }
}

/// Newest `/usr/lib/postgresql/<ver>/bin` that has `postgres` and `initdb`.
fn find_bin_dir() -> Result<PathBuf, String> {
    let root = Path::new("/usr/lib/postgresql");
    let entries = fs::read_dir(root).map_err(|e| {
        format!(
            "PostgreSQL server not found: cannot read {}: {e} (install e.g. postgresql-15)",
            root.display()
        )
    })?;
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(ver) = name
            .split('.')
            .map(str::parse::<u32>)
            .collect::<Result<Vec<u32>, _>>()
        else {
            continue;
        };
        let bin = entry.path().join("bin");
        if !bin.join("postgres").is_file() || !bin.join("initdb").is_file() {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _)| ver > *b) {
            best = Some((ver, bin));
        }
    }
    best.map(|(_, bin)| bin).ok_or_else(|| {
        format!(
            "PostgreSQL server not found: no {}/<version>/bin with postgres and initdb",
            root.display()
        )
    })
}

/// Effective uid 0? From /proc/self/status, falling back to `id -u`.
fn is_root() -> Result<bool, String> {
    if let Ok(status) = fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            // Uid: real effective saved fs
            if let Some(euid) = line.split_whitespace().nth(2) {
                return Ok(euid == "0");
            }
        }
    }
    let out = run_bounded(
        Command::new("id").arg("-u"),
        Duration::from_secs(10),
        "id -u",
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Looks up (creating if missing) the `modelgate-pg` system user.
fn ensure_pg_user() -> Result<RunAs, String> {
    let _guard = USER_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut last = String::new();
    for attempt in 0..10 {
        if let Some(run_as) = lookup_user()? {
            return Ok(run_as);
        }
        if attempt > 0 {
            // Another process may hold /etc/passwd's lock (exit 10) or just created the user.
            thread::sleep(Duration::from_millis(200));
        }
        let out = run_bounded(
            Command::new("useradd").args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_USER,
            ]),
            Duration::from_secs(30),
            "useradd",
        )?;
        // 0 = created, 9 = already exists (a race with another test process).
        last = format!(
            "useradd {PG_USER} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    match lookup_user()? {
        Some(run_as) => Ok(run_as),
        None => Err(format!("cannot create user {PG_USER}: {last}")),
    }
}

fn lookup_user() -> Result<Option<RunAs>, String> {
    let id = |flag: &str| -> Result<Option<u32>, String> {
        let out = run_bounded(
            Command::new("id").args([flag, PG_USER]),
            Duration::from_secs(10),
            "id",
        )?;
        if !out.status.success() {
            return Ok(None);
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse().ok())
    };
    match (id("-u")?, id("-g")?) {
        (Some(uid), Some(gid)) => Ok(Some(RunAs::User { uid, gid })),
        _ => Ok(None),
    }
}

/// Temp dir 0755 (data dir 0700), owned by the pg user under root so the server can also
/// put its socket and lock file there.
fn make_temp_dir(run_as: &RunAs) -> Result<tempfile::TempDir, String> {
    let mut base = std::env::temp_dir();
    if matches!(run_as, RunAs::User { .. }) && !traversable_by_others(&base) {
        // The pg user could not reach a dir under e.g. /root/tmp.
        base = PathBuf::from("/tmp");
    }
    let dir = tempfile::Builder::new()
        .prefix("modelgate-pg-")
        .tempdir_in(&base)
        .map_err(|e| format!("postgres: create temp dir in {}: {e}", base.display()))?;
    let data = dir.path().join("data");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("postgres: chmod {}: {e}", dir.path().display()))?;
    fs::create_dir(&data).map_err(|e| format!("postgres: mkdir {}: {e}", data.display()))?;
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("postgres: chmod {}: {e}", data.display()))?;
    if let RunAs::User { uid, gid } = run_as {
        for p in [dir.path(), data.as_path()] {
            std::os::unix::fs::chown(p, Some(*uid), Some(*gid))
                .map_err(|e| format!("postgres: chown {} to {PG_USER}: {e}", p.display()))?;
        }
    }
    Ok(dir)
}

/// Every ancestor of `path` has the "others may search" bit.
fn traversable_by_others(path: &Path) -> bool {
    path.ancestors().all(|p| {
        p.as_os_str().is_empty()
            || fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
}

/// A loopback port that was free a moment ago (a clash is retried by the caller).
fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// The caller's PG* variables (PGHOST, PGDATABASE, ...) must not redirect our tools.
fn clean_pg_env(cmd: &mut Command) {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGSSLMODE",
        "PGDATA",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGCONNECT_TIMEOUT", "5");
}

/// Runs `cmd` to completion, killing it after `timeout`.
fn run_bounded(cmd: &mut Command, timeout: Duration, what: &str) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: spawn failed: {e}"))?;
    // Drain pipes in threads so a chatty child cannot block on a full pipe.
    let out_t = drain(child.stdout.take());
    let err_t = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: timed out after {}s", timeout.as_secs()));
            }
            Err(e) => return Err(format!("{what}: wait failed: {e}")),
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

fn signal(sig: &str, pid: u32) {
    let _ = run_bounded(
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string()),
        Duration::from_secs(5),
        "kill",
    );
}

/// Waits for our child to exit; true if it did before `deadline`.
fn wait_child(child: &mut Child, deadline: Instant) -> bool {
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return false,
        }
    }
}

/// Waits for a non-child process to disappear (or become a zombie).
fn wait_pid_gone(pid: u32, deadline: Instant) -> bool {
    loop {
        let alive = fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| proc_state(&s) != Some('Z'))
            .unwrap_or(false);
        if !alive {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Pids whose parent is `pid` (the postmaster's backends and auxiliary processes).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| proc_ppid(&s))
                == Some(pid)
        })
        .collect()
}

/// Fields after the `(comm)` in /proc/<pid>/stat: state, ppid, ...
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

fn proc_state(stat: &str) -> Option<char> {
    stat_fields(stat)?.first()?.chars().next()
}

fn proc_ppid(stat: &str) -> Option<u32> {
    stat_fields(stat)?.get(1)?.parse().ok()
}

/// Last ~40 lines of the log written since byte `from`.
fn log_tail(path: &Path, from: u64) -> String {
    let mut raw = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.read_to_end(&mut raw);
    }
    let text = String::from_utf8_lossy(&raw);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(40);
    if lines.is_empty() {
        format!("(log {} is empty)", path.display())
    } else {
        lines[start..].join("\n")
    }
}
