package e2e

import (
	"context"
	"io"
	"maps"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"countd/internal/apiclient"
)

// TestBackupRestoreUnderLoad takes backups (GET /backup) of two nodes of a
// three-node cluster under load, then restores them both ways
// (docs/operations.md, "Backup and restore"):
//   - a fourth node, at a new address, starts on node0's backup and joins
//     the running cluster;
//   - node1, restarted once since its backup (so its lineage has written
//     under the incarnation after the one the backup records), is stopped
//     and restarted in place on its backup: the file copied over its
//     countd.db, same inode and path.
//
// Each restored node must start a new lineage (never an id the original
// wrote under), and once the load stops all four nodes must agree on values
// within the clients' bounds: no change counted twice, none lost.
func TestBackupRestoreUnderLoad(t *testing.T) {
	const clientsPerNode = 2
	ports := freePorts(t, 3)
	nodes := meshNodes(t, ports)
	startAll(t, nodes...)
	c := newClient(t, 2)
	c.Timeout = pollTimeout
	api := apiclient.Client{HTTP: c}

	l := newClusterLoad(t, clusterCounters)
	load := map[*clusterNode]func(){} // node -> stop its clients
	send := func(ns ...*clusterNode) {
		for _, n := range ns {
			load[n] = l.clientsOn(n, clientsPerNode)
		}
	}
	// stopNode stops n once its peers hold all its changes (a restore
	// loses what only the node held): every client pauses, since under
	// load a node's peers are always a few merges behind it.
	running := nodes // the nodes up when stopNode is called
	stopNode := func(n *clusterNode) {
		for m, stop := range load {
			stop()
			delete(load, m)
		}
		quiesce(t, c, n, running)
		n.proc.Stop()
	}
	acked := func(more int64) { l.waitAcked(t, l.ledger.Counts().OK+more) }
	send(nodes...)
	acked(300)

	backup0, backup1 := takeBackup(t, nodes[0]), takeBackup(t, nodes[1])
	r0 := replicaOf(t, api, nodes[0])
	used1 := []string{replicaOf(t, api, nodes[1])} // every id node1's file has written under
	acked(300)

	// node1 restarts once: incarnation 2 of its lineage, which the backup
	// (taken under incarnation 1) would hand out again without its mark.
	stopNode(nodes[1])
	send(nodes[0], nodes[2])
	startAll(t, nodes[1])
	used1 = append(used1, replicaOf(t, api, nodes[1]))
	if lineage(used1[1]) != lineage(used1[0]) {
		t.Fatalf("node1 restarted on its own file under %s, a new lineage after %s", used1[1], used1[0])
	}
	send(nodes[1])
	acked(300)

	// A fourth node at a new address, on node0's backup, joins.
	n3 := newClusterNode(t, 3, 0, "-peers="+strings.Join([]string{strconv.Itoa(ports[0]), strconv.Itoa(ports[1]), strconv.Itoa(ports[2])}, ","))
	writeFile(t, n3.dataFile(t), backup0)
	startAll(t, n3)
	nodes = append(nodes, n3)
	running = nodes
	r3 := replicaOf(t, api, n3)
	if lineage(r3) == lineage(r0) {
		t.Fatalf("node3, started on node0's backup, writes under %s: node0's lineage (node0 is %s)", r3, r0)
	}
	assertRestoreLogged(t, n3)
	send(n3)
	acked(300)

	// node1 in place on its older backup, while the others take changes.
	stopNode(nodes[1])
	send(nodes[0], nodes[2], n3)
	path := nodes[1].dataFile(t)
	ino := inodeOf(t, path)
	writeFile(t, path, backup1)
	if inodeOf(t, path) != ino {
		t.Fatal("writing the backup over countd.db changed its inode; the test no longer restores in place")
	}
	startAll(t, nodes[1])
	r1 := replicaOf(t, api, nodes[1])
	for _, id := range used1 {
		if lineage(r1) == lineage(id) {
			t.Errorf("node1, restored in place from its backup, writes under %s: the lineage of %s, which it wrote under before (ids used: %v)", r1, id, used1)
			break
		}
	}
	assertRestoreLogged(t, nodes[1])
	send(nodes[1])
	acked(600)

	l.stop()
	t.Logf("load: %s", l)
	values := awaitAgreement(t, nodes, l)
	l.checkBounds(t, values)
	for _, n := range nodes {
		n.proc.Stop()
	}
}

// clientsOn starts n clients sending to node, which return when the load
// stops or when the returned func is called (which waits for them).
func (l *clusterLoad) clientsOn(node *clusterNode, n int) (stop func()) {
	c := newClient(l.t, n)
	c.Timeout = opTimeout
	api := apiclient.Client{HTTP: c}
	var halt atomic.Bool
	var wg sync.WaitGroup
	for range n {
		l.wg.Add(1)
		wg.Go(func() {
			defer l.wg.Done()
			for !halt.Load() && !l.halt.Load() && l.ctx.Err() == nil {
				l.one(api, node)
			}
		})
	}
	return func() {
		halt.Store(true)
		wg.Wait()
	}
}

// takeBackup GETs n's /backup (from loopback, which a node without a
// cluster key allows) and returns the file.
func takeBackup(t *testing.T, n *clusterNode) []byte {
	t.Helper()
	c := newClient(t, 1)
	c.Timeout = backupTimeout
	resp, err := c.Get(n.url() + "/backup")
	if err != nil {
		t.Fatalf("GET /backup of %s: %v", n.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /backup of %s: %v", n.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /backup of %s: %s: %s", n.name, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("GET /backup: Content-Type %q", ct)
	}
	if resp.ContentLength != int64(len(body)) {
		t.Fatalf("GET /backup of %s: %d bytes, Content-Length %d", n.name, len(body), resp.ContentLength)
	}
	t.Logf("backup of %s: %d bytes", n.name, len(body))
	return body
}

// backupTimeout bounds one GET /backup: the files here are small.
const backupTimeout = 30 * time.Second

// lineage is the lineage part of a replica id (docs/design.md, "Replica
// ids and folds"): its first 12 hex digits.
func lineage(replica string) string { return replica[:min(12, len(replica))] }

func replicaOf(t *testing.T, api apiclient.Client, n *clusterNode) string {
	t.Helper()
	id, err := api.Replica(context.Background(), n.url())
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	return id
}

// quiesce waits, with no client sending, until every node reports the
// same values, so that n's peers hold all n's changes and stopping n loses
// nothing only it held. (GET /peers' "behind" over-counts here: it counts
// merged changes too, which a node does not push back to their sender.)
func quiesce(t *testing.T, c *http.Client, n *clusterNode, nodes []*clusterNode) {
	t.Helper()
	began := time.Now()
	var views []nodeView
	ok := poll(agreeTimeout, func() bool {
		views = views[:0]
		for _, m := range nodes {
			v := viewOf(c, m)
			if v.err != nil || len(views) > 0 && !maps.Equal(v.values, views[0].values) {
				views = append(views, v)
				return false
			}
			views = append(views, v)
		}
		return true
	})
	if !ok {
		t.Fatalf("the nodes did not agree within %v before %s stopped: %v", agreeTimeout, n.name, views)
	}
	t.Logf("the nodes agreed %v after the clients stopped, before %s stopped", time.Since(began).Round(time.Millisecond), n.name)
}

// assertRestoreLogged checks that n logged starting a new lineage because
// its file is a backup.
func assertRestoreLogged(t *testing.T, n *clusterNode) {
	t.Helper()
	for _, line := range n.proc.Output.Lines() {
		if strings.Contains(line, "starts a new lineage") && strings.Contains(line, "is a backup") {
			return
		}
	}
	t.Errorf("%s did not log starting a new lineage on a backup; its log:\n%s", n.name, n.proc.Output.Tail(20))
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil { // truncates an existing file in place
		t.Fatal(err)
	}
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}
