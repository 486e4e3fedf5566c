package pgtest

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// Proxy stands between a test's worker and PostgreSQL so the test can take the database away,
// as a restart or a failover does, and bring it back, or make it hang: accept connections and
// never answer, as a stuck server or a black-holing network path does.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
	// flowing is closed while bytes pass; while the proxy hangs it is open, and every byte read
	// waits on it before being forwarded.
	flowing chan struct{}
}

// NewProxy starts a proxy to the server of dsn and returns it with dsn rewritten to go through it.
func NewProxy(t testing.TB, dsn string) (*Proxy, string) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	target := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}, flowing: make(chan struct{})}
	close(p.flowing)
	t.Cleanup(func() { ln.Close(); p.SetDown(true) })
	go p.serve()
	return p, strings.Replace(dsn, target, ln.Addr().String(), 1)
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		go p.pipe(s, c)
		go p.pipe(c, s)
	}
}

// pipe copies src to dst, holding each read while the proxy hangs.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer func() { src.Close(); dst.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			flowing := p.flowing
			p.mu.Unlock()
			<-flowing
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// SetHung makes the proxy hang (true): it keeps accepting connections and reading what is sent,
// but forwards nothing either way, on new and open connections alike, until SetHung(false) or
// SetDown(true).
func (p *Proxy) SetHung(hung bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setHungLocked(hung)
}

func (p *Proxy) setHungLocked(hung bool) {
	select {
	case <-p.flowing:
		if hung {
			p.flowing = make(chan struct{})
		}
	default:
		if !hung {
			close(p.flowing)
		}
	}
}

// SetDown cuts every open connection and refuses new ones (true), or accepts again (false).
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
		// Only then wake the held pipes, which find their connections closed: woken first, a
		// pipe could forward what it held while the proxy hung (a statement whose client gave
		// up long ago) before its connection was cut, and the database would run it late.
		p.setHungLocked(false)
	}
}
