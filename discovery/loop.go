package discovery

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Config configures a Loop.
type Config struct {
	// Specs are the names to resolve.
	Specs []Spec
	// Interval is the mean time between resolutions (jittered by ±10%);
	// one round's lookups are bounded by it too.
	Interval time.Duration
	// Resolver looks the names up; nil means net.DefaultResolver, which
	// reads /etc/resolv.conf.
	Resolver Resolver
	// Self is the node's advertised address, host:port: it is never
	// registered, nor, if its host is a name, any address that name
	// resolves to at its port.
	Self string
	// Register is called with each address found, every round, from the
	// Loop's goroutine. It must not block for long; re-registering a known
	// peer must be cheap.
	Register func(addr string)
	// Logger receives what the Loop finds and its failures; nil means
	// slog.Default().
	Logger *slog.Logger
}

// A Loop resolves its specs at once and then every interval, registering
// every address found, until Stop.
type Loop struct {
	cfg    Config
	log    *slog.Logger
	seen   map[string]bool // addresses found so far, to log each once
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Start starts a Loop in a goroutine of its own; its first round begins at
// once, without holding the caller up.
func Start(cfg Config) *Loop {
	l := newLoop(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.run(ctx)
	return l
}

func newLoop(cfg Config) *Loop {
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Loop{cfg: cfg, log: cfg.Logger, seen: make(map[string]bool), done: make(chan struct{})}
}

// Stop ends the Loop, aborting lookups in flight, and returns once its
// goroutine has ended (Register is not called after). It is safe to call
// more than once.
func (l *Loop) Stop() {
	l.once.Do(l.cancel)
	<-l.done
}

func (l *Loop) run(ctx context.Context) {
	defer close(l.done)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.round(ctx)
		t.Reset(jitter(l.cfg.Interval))
	}
}

// jitter spreads d by ±10%, so nodes started together do not query the
// DNS server in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return d - d/10 + rand.N(d/5+1)
}

// round resolves every spec once and registers what it finds. A failed
// lookup is logged and tried again next round; the addresses it found
// before stay registered.
func (l *Loop) round(stop context.Context) {
	ctx, cancel := context.WithTimeout(stop, max(l.cfg.Interval, time.Second))
	defer cancel()
	self := l.self(ctx)
	for _, spec := range l.cfg.Specs {
		addrs, err := Resolve(ctx, l.cfg.Resolver, spec)
		if stop.Err() != nil {
			return // stopped: register nothing more
		}
		if err != nil {
			l.log.Warn("DNS discovery failed; trying again at the next interval",
				"spec", spec.String(), "interval", l.cfg.Interval, "err", err)
		}
		for _, addr := range addrs {
			if self[addr] {
				continue
			}
			if !l.seen[addr] {
				l.seen[addr] = true
				l.log.Info("peer found through DNS", "peer", addr, "spec", spec.String())
			}
			l.cfg.Register(addr)
		}
	}
}

// self returns the addresses that are this node: Self, and if its host is a
// name, the addresses that name has at Self's port.
func (l *Loop) self(ctx context.Context) map[string]bool {
	self := map[string]bool{l.cfg.Self: true}
	host, port, err := net.SplitHostPort(l.cfg.Self)
	if err != nil {
		return self
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return self
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return self
	}
	ips, err := hostIPs(ctx, l.cfg.Resolver, host, p)
	if err != nil {
		l.log.Debug("looking up this node's own name failed", "advertise", l.cfg.Self, "err", err)
	}
	for _, a := range ips {
		self[a] = true
	}
	return self
}
