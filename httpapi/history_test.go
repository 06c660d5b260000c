package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"countd/actors"
	"countd/internal/poll"
	"countd/metrics"
)

// TestHistory drives the history by hand through readings and checks what
// GET /status would show of it: always the window of size steps up to now.
func TestHistory(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	counted := func(sec float64, applied uint64) reading {
		return reading{at: at(sec), applied: applied, counted: true, behind: map[string]uint64{}}
	}
	withPeers := func(r reading, behind map[string]uint64) reading { r.behind = behind; return r }
	tests := []struct {
		name     string
		size     int
		readings []reading
		now      float64 // seconds after t0 at the snapshot
		want     string  // the snapshot as JSON, step_seconds aside
	}{
		{
			name: "nothing recorded yet",
			size: 5,
			now:  3,
			want: `{"changes_per_second":[],"behind":{}}`,
		},
		{
			name:     "rate is the change of the count over the time between readings",
			size:     5,
			readings: []reading{counted(0, 100), counted(1, 110), counted(2, 130), counted(3, 130), counted(3.5+0.5, 131)},
			now:      4,
			want:     `{"changes_per_second":[null,10,20,0,1],"behind":{}}`,
		},
		{
			name:     "a ticker's jitter neither skips a step nor fills one twice",
			size:     5,
			readings: []reading{counted(0, 0), counted(0.998, 10), counted(2.003, 20), counted(2.999, 30)},
			now:      3.001,
			want:     `{"changes_per_second":[null,null,10,10,10],"behind":{}}`,
		},
		{
			name:     "a missed step is null and the next rate spans the gap",
			size:     5,
			readings: []reading{counted(0, 0), counted(1, 5), counted(3, 25)},
			now:      3,
			want:     `{"changes_per_second":[null,null,5,null,10],"behind":{}}`,
		},
		{
			name:     "a second reading in a step is dropped",
			size:     5,
			readings: []reading{counted(0, 0), counted(1, 5), counted(1.2, 500), counted(2, 6)},
			now:      2,
			want:     `{"changes_per_second":[null,null,null,5,1],"behind":{}}`,
		},
		{
			name: "without metrics the rate is unknown",
			size: 5,
			readings: []reading{{at: at(0), behind: map[string]uint64{}}, {at: at(1), behind: map[string]uint64{}},
				{at: at(2), behind: map[string]uint64{}}},
			now:  2,
			want: `{"changes_per_second":[null,null,null,null,null],"behind":{}}`,
		},
		{
			name:     "steps since the last reading are null up to now",
			size:     5,
			readings: []reading{counted(0, 0), counted(1, 3)},
			now:      4.2,
			want:     `{"changes_per_second":[null,3,null,null,null],"behind":{}}`,
		},
		{
			name:     "the ring keeps the last size steps",
			size:     3,
			readings: []reading{counted(0, 0), counted(1, 1), counted(2, 3), counted(3, 6), counted(4, 10), counted(5, 15)},
			now:      5,
			want:     `{"changes_per_second":[3,4,5],"behind":{}}`,
		},
		{
			name:     "the window ends now even when the last reading is old",
			size:     3,
			readings: []reading{counted(0, 0), counted(1, 1), counted(2, 3)},
			now:      3,
			want:     `{"changes_per_second":[1,2,null],"behind":{}}`,
		},
		{
			name: "each peer's behind, null where it was not listed or membership did not answer",
			size: 5,
			readings: []reading{
				withPeers(counted(0, 0), map[string]uint64{"a:1": 1}),
				withPeers(counted(1, 0), map[string]uint64{"a:1": 2, "b:2": 7}),
				withPeers(counted(2, 0), nil),
				withPeers(counted(3, 0), map[string]uint64{"a:1": 4, "b:2": 8}),
				withPeers(counted(4, 0), map[string]uint64{"b:2": 0}),
			},
			now:  4,
			want: `{"changes_per_second":[null,0,0,0,0],"behind":{"a:1":[1,2,null,4,null],"b:2":[null,7,null,8,0]}}`,
		},
		{
			name: "a peer gone for the whole window drops out",
			size: 2,
			readings: []reading{
				withPeers(counted(0, 0), map[string]uint64{"old:1": 5}),
				withPeers(counted(1, 0), map[string]uint64{"new:2": 1}),
				withPeers(counted(2, 0), map[string]uint64{"new:2": 2}),
			},
			now:  2,
			want: `{"changes_per_second":[0,0],"behind":{"new:2":[1,2]}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &history{size: tt.size}
			for _, r := range tt.readings {
				h.record(r)
			}
			snap := h.snapshot(at(tt.now))
			if snap.StepSeconds != 1 {
				t.Errorf("step_seconds = %v, want 1", snap.StepSeconds)
			}
			snap.StepSeconds = 0
			got, err := json.Marshal(struct {
				ChangesPerSecond []*float64           `json:"changes_per_second"`
				Behind           map[string][]*uint64 `json:"behind"`
			}{snap.ChangesPerSecond, snap.Behind})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("snapshot = %s\nwant       %s", got, tt.want)
			}
		})
	}
}

// TestHistorySamplerRunsWhileWatched: the sampler runs only after a look
// (and takes a reading at once), stops by itself once nobody has looked
// for the watch time, starts again at the next look, and close stops it
// for good.
func TestHistorySamplerRunsWhileWatched(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := &history{step: time.Millisecond, watch: 20 * time.Millisecond}
	var reads atomic.Int64
	h.open(func(_ context.Context, at time.Time) reading {
		reads.Add(1)
		return reading{at: at, counted: true, applied: uint64(reads.Load())}
	})
	if h.sampling() || reads.Load() != 0 {
		t.Fatalf("sampling %v with %d readings before anyone looked", h.sampling(), reads.Load())
	}
	h.look(t.Context(), time.Now())
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d readings right after the first look, want 1", n)
	}
	readings := func(want int64) {
		t.Helper()
		_, err := poll.Until(t.Context(), 5*time.Second, time.Millisecond, "readings go on while watched", func() (bool, string) {
			n := reads.Load()
			return n >= want, fmt.Sprintf("%d readings", n)
		})
		if err != nil {
			h.close()
			t.Fatal(err)
		}
	}
	readings(3)
	_, err := poll.Until(t.Context(), 5*time.Second, time.Millisecond, "the sampler stops when nobody looks", func() (bool, string) {
		return !h.sampling(), fmt.Sprintf("%d readings", reads.Load())
	})
	if err != nil {
		h.close()
		t.Fatal(err)
	}
	h.look(t.Context(), time.Now())
	if !h.sampling() {
		t.Fatal("a look after the sampler stopped did not start it again")
	}
	readings(reads.Load() + 2)
	h.close()
	n := reads.Load()
	h.close()
	h.look(t.Context(), time.Now())
	if h.sampling() || reads.Load() != n {
		t.Errorf("after close: sampling %v, readings %d then %d", h.sampling(), n, reads.Load())
	}
	if got := len(h.snapshot(time.Now()).ChangesPerSecond); got == 0 {
		t.Error("nothing recorded")
	}
}

// TestStatusHistoryWhileOpen runs a server and checks that GET /status
// shows the changes made through it, as a rate, and its peer's behind.
func TestStatusHistoryWhileOpen(t *testing.T) {
	cluster := peerTable{peers: []actors.PeerInfo{{Addr: "127.0.0.1:9001", State: actors.StateAlive, Behind: 7}}}
	s := NewServer(Config{Addr: "127.0.0.1:0", Counters: newFake(), Cluster: cluster, Node: testNode,
		Replica: testReplica, Metrics: metrics.New(metrics.Sources{})})
	s.hist.step = 20 * time.Millisecond
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: specTransport(t, tr), Timeout: 10 * time.Second}
	base := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port()))

	var got historyReply
	_, err := poll.Until(t.Context(), 10*time.Second, 5*time.Millisecond, "a positive rate and the peer's behind 7", func() (bool, string) {
		resp, err := c.Post(base+"/increment", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp, err = c.Get(base + "/status?history=1"); err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			History historyReply `json:"history"`
		}
		if b, _ := io.ReadAll(resp.Body); json.Unmarshal(b, &st) != nil {
			t.Fatalf("GET /status: %s", b)
		}
		got = st.History
		rate, behind := false, false
		for _, r := range got.ChangesPerSecond {
			rate = rate || (r != nil && *r > 0)
		}
		for _, b := range got.Behind["127.0.0.1:9001"] {
			behind = behind || (b != nil && *b == 7)
		}
		return rate && behind, fmt.Sprintf("%+v", got)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.StepSeconds != 0.02 {
		t.Errorf("step_seconds = %v, want 0.02", got.StepSeconds)
	}
}
