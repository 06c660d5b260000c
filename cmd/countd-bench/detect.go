package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"countd/internal/apiclient"
	"countd/internal/poll"
)

// measureDetection is idle mode's -detect: it SIGKILLs the last node the
// tool started and returns the time until every other node lists it down
// in GET /peers (polled every 100 ms, so within 100 ms above the truth).
func measureDetection(ctx context.Context, cl *cluster, timeout time.Duration) (time.Duration, error) {
	if cl.peer == peerMemberlist {
		return detectMemberlist(ctx, cl, timeout)
	}
	if len(cl.procs) < 2 {
		return 0, errors.New("-detect needs at least 2 nodes the tool started")
	}
	victim := len(cl.procs) - 1
	dead, others := cl.addrs[victim], cl.addrs[:victim]
	c := &http.Client{Timeout: 2 * time.Second, Transport: cl.auth.transport(&http.Transport{})}
	defer c.CloseIdleConnections()
	start := time.Now()
	if err := cl.procs[victim].Kill(5 * time.Second); err != nil {
		return 0, fmt.Errorf("kill %s: %w", dead, err)
	}
	_, err := poll.Until(ctx, timeout, 100*time.Millisecond, dead+" down on every other node", func() (bool, string) {
		states, err := fetchAll(ctx, others, func(ctx context.Context, a string) (string, error) {
			rows, err := apiclient.Client{HTTP: c}.Peers(ctx, cl.auth.base(a))
			if err != nil {
				return "", err
			}
			return apiclient.PeerStates(rows, nil)[dead], nil
		})
		if err != nil {
			return false, err.Error()
		}
		for i, s := range states {
			if s != "down" {
				return false, fmt.Sprintf("%s lists it %q", others[i], s)
			}
		}
		return true, ""
	})
	return time.Since(start), err
}
