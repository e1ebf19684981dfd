package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The PostgreSQL server the tests of one binary share: it starts with the
// first StartPostgres and stops when the last test that called it ends.
var pg struct {
	mu   sync.Mutex
	srv  *pgServer
	refs int
	next int
}

// StartPostgres returns the URL of a new, empty database on a PostgreSQL
// server of its own (Debian's postgresql package, run from a temporary
// directory on a loopback port; as an unprivileged user when the test runs
// as root, since PostgreSQL refuses root). Every call makes a fresh
// database on one shared server, which stops when the last test that
// called StartPostgres ends: a test whose subtests each want a database
// calls it once itself first, so that the server outlives the subtests.
// Missing PostgreSQL fails the test (scripts/test installs it); it never
// skips.
func StartPostgres(t testing.TB) (url string) {
	t.Helper()
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.srv == nil {
		srv, err := startPostgresServer()
		if err != nil {
			t.Fatal(err)
		}
		pg.srv = srv
	}
	pg.refs++
	t.Cleanup(func() {
		pg.mu.Lock()
		defer pg.mu.Unlock()
		if pg.refs--; pg.refs == 0 {
			pg.srv.stop()
			pg.srv = nil
		}
	})
	pg.next++
	name := fmt.Sprintf("db_%d", pg.next)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.srv.url("postgres"))
	if err != nil {
		t.Fatalf("connecting to the test PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating the test database %s: %v", name, err)
	}
	return pg.srv.url(name)
}

type pgServer struct {
	dir  string // the data directory's parent: socket, log
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when the server exited

	bin, data string // to start it again (Postgres.Start)
	cred      *syscall.Credential
}

// Postgres is a PostgreSQL server a test has to itself, so that it may
// stop and start it (a database outage) without disturbing other tests.
type Postgres struct {
	t   testing.TB
	mu  sync.Mutex
	srv *pgServer
}

// StartOwnPostgres starts a PostgreSQL server for t alone; it stops when
// t ends. Like StartPostgres, it fails (never skips) without PostgreSQL.
func StartOwnPostgres(t testing.TB) *Postgres {
	t.Helper()
	srv, err := startPostgresServer()
	if err != nil {
		t.Fatal(err)
	}
	p := &Postgres{t: t, srv: srv}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.srv.stop()
	})
	return p
}

// URL is the URL of database "postgres" on the server.
func (p *Postgres) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.srv.url("postgres")
}

// Stop shuts the server down (fast shutdown: open connections are cut),
// keeping its data.
func (p *Postgres) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.srv.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.srv.done:
	case <-time.After(10 * time.Second):
		p.srv.kill()
	}
}

// Start starts the stopped server again on the same port and data.
func (p *Postgres) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.srv
	s, err := runPostgresOn(old.bin, old.dir, old.data, old.cred, old.port)
	if err != nil {
		p.t.Fatalf("starting PostgreSQL again: %v", err)
	}
	p.srv = s
}

func (s *pgServer) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// postgresBin finds the directory of initdb and postgres:
// $KEYWARD_POSTGRES_BIN, the newest /usr/lib/postgresql/<version>/bin
// (Debian keeps them off PATH), or PATH.
func postgresBin() (string, error) {
	if d := os.Getenv("KEYWARD_POSTGRES_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var found []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			found = append(found, d)
		}
	}
	if len(found) > 0 {
		version := func(d string) int { v, _ := strconv.Atoi(filepath.Base(filepath.Dir(d))); return v }
		return slices.MaxFunc(found, func(a, b string) int { return version(a) - version(b) }), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): " +
		"run scripts/test, which installs it (apt-get install postgresql)")
}

// postgresUser is who runs the server: the caller, unless it is root,
// which PostgreSQL refuses; then Debian's postgres user, or nobody.
func postgresUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 == nil && err2 == nil {
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
		}
	}
	return nil, errors.New("the tests run as root, and neither a postgres nor a nobody user exists to run PostgreSQL as")
}

func startPostgresServer() (*pgServer, error) {
	bin, err := postgresBin()
	if err != nil {
		return nil, err
	}
	cred, err := postgresUser()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "keyward-postgres-")
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
		"--locale=C", "--encoding=UTF8", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	for attempt := 0; ; attempt++ {
		s, err := runPostgres(bin, dir, data, cred)
		if err == nil {
			return s, nil
		}
		if attempt == 2 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// runPostgres starts the server on a free loopback port and waits until
// it accepts connections. Durability is off: the data is thrown away.
func runPostgres(bin, dir, data string, cred *syscall.Credential) (*pgServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return runPostgresOn(bin, dir, data, cred, port)
}

// runPostgresOn starts the server on port and waits until it accepts
// connections.
func runPostgresOn(bin, dir, data string, cred *syscall.Credential, port int) (*pgServer, error) {
	s := &pgServer{dir: dir, port: port, done: make(chan struct{}), bin: bin, data: data, cred: cred}
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(s.port), "-h", "127.0.0.1", "-k", dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300")
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	// Pdeathsig ends the server if the test binary dies without its
	// cleanup (a panic, a timeout). It is sent when the starting thread
	// ends, so the goroutine that starts the server keeps its thread
	// until the server exits.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.cmd.Wait()
		close(s.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("postgres exited on start: %s", strings.TrimSpace(string(out)))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.url("postgres"))
		if err == nil {
			conn.Close(ctx)
			cancel()
			return s, nil
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	s.kill()
	out, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("postgres did not accept connections on port %d: %s", s.port, strings.TrimSpace(string(out)))
}

// kill ends the server at once and waits for it.
func (s *pgServer) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// stop shuts the server down (fast shutdown) and removes its files.
func (s *pgServer) stop() {
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.kill()
	}
	os.RemoveAll(s.dir)
}
