package actors

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// A down peer has no PeerActor to report on it, yet its behind must keep
// growing with the changes it never got, counted from the version it held
// when it went down (it used to freeze: 0 after 9 changes the peer lacked).
func TestDownPeerIsBehindByTheChangesItNeverGot(t *testing.T) {
	const peer = "127.0.0.2:2"
	refused := errors.New("connection refused")

	// start runs a Supervisor with real PeerActors over a durable
	// CounterActor (notices go out before a change is acknowledged), and
	// registers the peer.
	start := func(t *testing.T, tr *fakeTransport) (sys *actor.ActorSystem, sup *actor.PID, inc func(n int), cl *Cluster) {
		sys = newSystem(t)
		counter, _ := spawnCounter(t, sys, newFakeStore(false))
		cfg := testPeerConfig(tr, counter)
		cfg.HeartbeatInterval = 5 * time.Millisecond
		cfg.FailuresBeforeDown = 2
		sup = sys.Root.Spawn(NewSupervisorProps(SupervisorConfig{Self: cfg.Self, Peer: cfg,
			DownProbeMin: time.Hour, DownProbeMax: time.Hour, Logger: slog.New(slog.DiscardHandler)}))
		t.Cleanup(func() { sys.Root.PoisonFuture(sup).Wait() })
		if r := askActor(t, sys, sup, &RegisterPeer{Addr: peer}).(*RegisterResult); !r.Created {
			t.Fatalf("register = %+v", r)
		}
		client := NewCounters(sys.Root, counter, wait)
		inc = func(n int) {
			for range n {
				if _, err := client.Increment(context.Background(), "c", 1); err != nil {
					t.Fatal(err)
				}
			}
		}
		return sys, sup, inc, NewCluster(sys.Root, sup, client, wait)
	}
	// row reads the table as GET /peers does, through Cluster.Peers.
	row := func(t *testing.T, cl *Cluster) PeerInfo {
		t.Helper()
		peers, err := cl.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range peers {
			if p.Addr == peer {
				return p
			}
		}
		t.Fatalf("%s is not listed", peer)
		return PeerInfo{}
	}
	awaitDown := func(t *testing.T, cl *Cluster) PeerInfo {
		t.Helper()
		for deadline := time.Now().Add(wait); ; time.Sleep(5 * time.Millisecond) {
			if r := row(t, cl); r.State == StateDown {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not down after %v of failed health checks", peer, wait)
			}
		}
	}

	t.Run("held some", func(t *testing.T) {
		tr := newFakeTransport()
		sys, sup, inc, cl := start(t, tr)
		inc(2)
		// Flush answers once the peer acknowledged both changes.
		pids := askActor(t, sys, sup, &GetPeerPIDs{}).(*PeerPIDs).PIDs
		if len(pids) != 1 {
			t.Fatalf("%d PeerActors, want 1", len(pids))
		}
		if f := askActor(t, sys, pids[0], &Flush{}).(*Flushed); f.Err != nil {
			t.Fatal(f.Err)
		}
		tr.set(func(f *fakeTransport) { f.healthErr, f.pushErr = refused, refused })
		if r := awaitDown(t, cl); r.Behind != 0 {
			t.Fatalf("down after acknowledging every change: behind %d, want 0", r.Behind)
		}
		// Each change is durable before it is acknowledged, so the next
		// read of the table counts all of them.
		inc(3)
		if r := row(t, cl); r.State != StateDown || r.Behind != 3 {
			t.Fatalf("after 3 changes it never got: %s behind %d, want down behind 3", r.State, r.Behind)
		}
		inc(6)
		if r := row(t, cl); r.Behind != 9 {
			t.Fatalf("after 9 changes it never got: behind %d, want 9", r.Behind)
		}
	})

	t.Run("never reached", func(t *testing.T) {
		tr := newFakeTransport()
		tr.healthErr, tr.pushErr = refused, refused
		_, _, inc, cl := start(t, tr)
		inc(4)
		awaitDown(t, cl)
		inc(5)
		if r := row(t, cl); r.Behind != 9 {
			t.Fatalf("a peer that never got a push, after 9 changes: behind %d, want 9", r.Behind)
		}
	})
}
