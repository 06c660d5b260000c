package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"countd/internal/poll"
)

// fakeResolver answers from maps the test changes, and counts lookups.
type fakeResolver struct {
	mu      sync.Mutex
	hosts   map[string][]string
	srvs    map[string][]*net.SRV
	fail    map[string]error
	lookups int
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{hosts: map[string][]string{}, srvs: map[string][]*net.SRV{}, fail: map[string]error{}}
}

func (r *fakeResolver) set(f func(r *fakeResolver)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *fakeResolver) LookupHost(ctx context.Context, host string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	if err := r.fail[host]; err != nil {
		return nil, err
	}
	if h, ok := r.hosts[host]; ok {
		return slices.Clone(h), nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *fakeResolver) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	if service != "" || proto != "" {
		return "", nil, fmt.Errorf("LookupSRV(%q, %q, %q): want the whole name in name", service, proto, name)
	}
	if err := r.fail[name]; err != nil {
		return "", nil, err
	}
	if s, ok := r.srvs[name]; ok {
		return name, s, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func mustSpec(t *testing.T, s string) Spec {
	t.Helper()
	spec, err := ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestResolve(t *testing.T) {
	r := newFakeResolver()
	r.hosts["countd.svc"] = []string{"10.0.0.2", "10.0.0.1", "::ffff:10.0.0.1", "fe80::1%eth0", "2001:db8::1"}
	r.hosts["n0.countd.svc"] = []string{"10.0.0.1"}
	r.hosts["n1.countd.svc"] = []string{"10.0.0.2"}
	r.srvs["_countd._tcp.countd.svc"] = []*net.SRV{
		{Target: "N1.countd.svc.", Port: 8081}, {Target: "n0.countd.svc.", Port: 8080},
		{Target: ".", Port: 8080}, {Target: "gone.countd.svc.", Port: 8080},
	}
	tests := []struct {
		spec    string
		want    []string
		wantErr bool
	}{
		{"dns+countd.svc:8080", []string{"10.0.0.1:8080", "10.0.0.2:8080", "[2001:db8::1]:8080"}, false},
		{"dns+missing.svc:8080", nil, true},
		{"dnssrv+_countd._tcp.countd.svc", []string{"10.0.0.1:8080", "10.0.0.2:8081"}, true}, // gone has no address
		{"dnssrvnoa+_countd._tcp.countd.svc", []string{"gone.countd.svc:8080", "n0.countd.svc:8080", "n1.countd.svc:8081"}, false},
		{"dnssrv+_missing._tcp.countd.svc", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := Resolve(context.Background(), r, mustSpec(t, tt.spec))
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Fatalf("Resolve = %q, %v; want %q (error: %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// registry records the addresses a Loop registers.
type registry struct {
	mu    sync.Mutex
	calls []string
}

func (g *registry) register(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, addr)
}

// take returns the addresses registered since the last take, sorted.
func (g *registry) take() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := g.calls
	g.calls = nil
	slices.Sort(out)
	return out
}

// A round registers every address found, again each round (the Supervisor
// ignores known members), except the node's own, by address or by name;
// a failed lookup registers nothing and does not stop the other specs.
func TestLoopRound(t *testing.T) {
	r := newFakeResolver()
	r.hosts["countd.svc"] = []string{"10.0.0.1", "10.0.0.2"}
	r.hosts["me.countd.svc"] = []string{"10.0.0.2"}
	r.srvs["_countd._tcp.countd.svc"] = []*net.SRV{{Target: "me.countd.svc.", Port: 8080}, {Target: "other.countd.svc.", Port: 8080}}
	var reg registry
	l := newLoop(Config{
		Specs:    []Spec{mustSpec(t, "dns+countd.svc:8080"), mustSpec(t, "dnssrvnoa+_countd._tcp.countd.svc"), mustSpec(t, "dns+broken.svc:8080")},
		Interval: time.Minute,
		Resolver: r,
		Self:     "me.countd.svc:8080",
		Register: reg.register,
		Logger:   slog.New(slog.DiscardHandler),
	})
	r.set(func(r *fakeResolver) { r.fail["broken.svc"] = errors.New("server misbehaving") })
	l.round(context.Background())
	if got, want := reg.take(), []string{"10.0.0.1:8080", "other.countd.svc:8080"}; !slices.Equal(got, want) {
		t.Fatalf("first round registered %q, want %q (not this node, by name or by address)", got, want)
	}

	// A record added, one gone, the broken name fixed: the new addresses
	// are registered; the gone one is not removed (nothing is).
	r.set(func(r *fakeResolver) {
		r.hosts["countd.svc"] = []string{"10.0.0.3", "10.0.0.2"}
		delete(r.fail, "broken.svc")
		r.hosts["broken.svc"] = []string{"10.0.0.9"}
	})
	l.round(context.Background())
	if got, want := reg.take(), []string{"10.0.0.3:8080", "10.0.0.9:8080", "other.countd.svc:8080"}; !slices.Equal(got, want) {
		t.Fatalf("second round registered %q, want %q", got, want)
	}
}

// A started Loop resolves at once and then every interval: a record added
// later is registered without a restart, and a lookup that fails is tried
// again. After Stop it looks nothing up and registers nothing.
func TestLoopResolvesEveryIntervalUntilStopped(t *testing.T) {
	r := newFakeResolver()
	r.set(func(r *fakeResolver) { r.fail["countd.svc"] = errors.New("server misbehaving") })
	var reg registry
	l := Start(Config{
		Specs:    []Spec{mustSpec(t, "dns+countd.svc:8080")},
		Interval: 20 * time.Millisecond,
		Resolver: r,
		Self:     "10.0.0.1:8080",
		Register: reg.register,
		Logger:   slog.New(slog.DiscardHandler),
	})
	defer l.Stop()
	lookups := func() int { r.mu.Lock(); defer r.mu.Unlock(); return r.lookups }
	wait := func(what string, cond func() bool) {
		t.Helper()
		if _, err := poll.Until(context.Background(), 5*time.Second, time.Millisecond, what, func() (bool, string) {
			return cond(), ""
		}); err != nil {
			t.Fatal(err)
		}
	}
	wait("the failed lookup is tried again", func() bool { return lookups() >= 2 })
	r.set(func(r *fakeResolver) {
		delete(r.fail, "countd.svc")
		r.hosts["countd.svc"] = []string{"10.0.0.1", "10.0.0.2"}
	})
	wait("10.0.0.2 registered", func() bool { return slices.Contains(reg.take(), "10.0.0.2:8080") })
	r.set(func(r *fakeResolver) { r.hosts["countd.svc"] = []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} })
	wait("10.0.0.3 registered", func() bool { return slices.Contains(reg.take(), "10.0.0.3:8080") })

	l.Stop()
	l.Stop() // twice is fine
	before := lookups()
	reg.take()
	// Three intervals: a negative no single look can show.
	if err := poll.While(context.Background(), 60*time.Millisecond, 5*time.Millisecond, "nothing after Stop", func() (bool, string) {
		if n := lookups(); n != before {
			return false, fmt.Sprintf("%d lookups after Stop", n-before)
		}
		if got := reg.take(); len(got) > 0 {
			return false, fmt.Sprintf("registered %q after Stop", got)
		}
		return true, ""
	}); err != nil {
		t.Fatal(err)
	}
}
