package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNode serves GET /counters from a function of how often it was asked.
func fakeNode(t *testing.T, counters func(poll int64) map[string]int64) string {
	t.Helper()
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/counters" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"counters": counters(polls.Add(1)), "node": "x"})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestWaitAgreement(t *testing.T) {
	final := map[string]int64{"default": 10, "a": 2}
	// One node has everything; the other catches up on its fourth poll.
	a := fakeNode(t, func(int64) map[string]int64 { return final })
	b := fakeNode(t, func(n int64) map[string]int64 {
		if n < 4 {
			return map[string]int64{"default": 10}
		}
		return final
	})
	c := &http.Client{Timeout: 5 * time.Second}
	since := time.Now()
	ag, err := waitAgreement(context.Background(), c, []string{a, b}, since, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ag.Polls != 4 || ag.Counters["a"] != 2 || ag.After <= 0 || ag.After > time.Since(since) {
		t.Fatalf("agreement %+v", ag)
	}
}

func TestWaitAgreementTimesOut(t *testing.T) {
	a := fakeNode(t, func(int64) map[string]int64 { return map[string]int64{"default": 1} })
	b := fakeNode(t, func(int64) map[string]int64 { return map[string]int64{"default": 2} })
	c := &http.Client{Timeout: 5 * time.Second}
	// The nodes never agree, so this always runs out; the timeout only has
	// to leave room for one complete round on a loaded machine (50 ms did
	// not, under a parallel -race run).
	_, err := waitAgreement(context.Background(), c, []string{a, b}, time.Now(), 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "summing to 2") {
		t.Fatalf("err = %v, want a timeout that says what each node had", err)
	}
}

func TestLimitedAndCreateURLs(t *testing.T) {
	u := createURLs("http://h:1", "p", 3)
	var got []string
	for {
		s, ok := u(0, 0)
		if !ok {
			break
		}
		got = append(got, s)
	}
	if strings.Join(got, " ") != "http://h:1/counters/p-0/increment http://h:1/counters/p-1/increment http://h:1/counters/p-2/increment" {
		t.Fatalf("createURLs gave %v", got)
	}
	l := limited(incrementURLs([]string{"http://h:1", "http://h:2"}, 0), 2)
	s1, ok1 := l(0, 0)
	s2, ok2 := l(1, 0)
	_, ok3 := l(0, 1)
	if s1 != "http://h:1/increment" || s2 != "http://h:2/increment" || !ok1 || !ok2 || ok3 {
		t.Fatalf("limited(incrementURLs) gave %q %v, %q %v, then %v", s1, ok1, s2, ok2, ok3)
	}
	n := incrementURLs([]string{"http://h:1"}, 2)
	if a, _ := n(0, 0); a != "http://h:1/counters/bench-0/increment" {
		t.Fatalf("named counters: %q", a)
	}
	if a, _ := n(0, 1); a != "http://h:1/counters/bench-1/increment" {
		t.Fatalf("named counters: %q", a)
	}
}
