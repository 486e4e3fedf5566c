package webhook

import (
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The listener's bounds, fixed: a delivery is one small POST, so a sender that needs longer
// than these is either broken or holding the connection on purpose.
const (
	// MaxConnsDefault bounds the connections served at once; past it, new ones wait in the
	// kernel's accept queue until one closes. With MaxBodyDefault that bounds what deliveries
	// can hold in memory to a few MiB.
	MaxConnsDefault = 64
	// ReadHeaderTimeoutDefault bounds the wait for a request's headers.
	ReadHeaderTimeoutDefault = 5 * time.Second
	// ReadTimeoutDefault bounds reading a whole request, body included.
	ReadTimeoutDefault = 10 * time.Second
	// WriteTimeoutDefault bounds a request from the end of its headers to the end of the answer.
	WriteTimeoutDefault = 15 * time.Second
	// IdleTimeoutDefault closes a kept-alive connection that sends nothing more.
	IdleTimeoutDefault = 30 * time.Second
)

// Listen binds addr for webhooks, serving at most maxConns connections at once.
func Listen(addr string, maxConns int) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return LimitListener(ln, maxConns), nil
}

// NewServer is the webhook's HTTP server, with the timeouts above.
func NewServer(h http.Handler, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeoutDefault,
		ReadTimeout:       ReadTimeoutDefault,
		WriteTimeout:      WriteTimeoutDefault,
		IdleTimeout:       IdleTimeoutDefault,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          zap.NewStdLog(log),
	}
}

// LimitListener accepts at most n connections at once: Accept waits for a slot before taking
// the next connection, and closing a connection frees its slot (as golang.org/x/net/netutil,
// which the module does not otherwise need).
func LimitListener(ln net.Listener, n int) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
