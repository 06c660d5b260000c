package respapi_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"countd/internal/poll"
	"countd/internal/testcluster"
	"countd/node"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 5 * time.Second

// openNode starts an in-process node with a RESP port on a free port;
// tune changes its config first. It is closed when the test ends.
func openNode(t *testing.T, tune func(*node.Config)) *node.Node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.TestConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.RESPListener = ln
	if tune != nil {
		tune(&cfg)
	}
	n, err := node.Open(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// dial returns a go-redis client of the node's RESP port (RESP3 unless
// tune says otherwise), closed when the test ends.
func dial(t *testing.T, addr string, tune func(*redis.Options)) *redis.Client {
	t.Helper()
	opts := &redis.Options{Addr: addr, DisableIdentity: false, MaxRetries: -1, PoolSize: 4}
	if tune != nil {
		tune(opts)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestHandshakes: go-redis's default RESP3 handshake (HELLO 3, CLIENT
// SETINFO) and RESP2 both work; HELLO's reply is a map in RESP3, a flat
// array in RESP2; a missing counter is redis.Nil in both.
func TestHandshakes(t *testing.T) {
	n := openNode(t, nil)
	ctx := context.Background()
	for _, proto := range []int{3, 2} {
		t.Run(strconv.Itoa(proto), func(t *testing.T) {
			c := dial(t, n.RESPAddr(), func(o *redis.Options) { o.Protocol = proto })
			if err := c.Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			hello, err := c.Do(ctx, "HELLO", proto).Result()
			if err != nil {
				t.Fatal(err)
			}
			switch proto {
			case 3:
				m, ok := hello.(map[any]any)
				if !ok || m["server"] != "countd" || m["proto"] != int64(3) || m["mode"] != "standalone" || m["role"] != "master" {
					t.Fatalf("HELLO 3 = %#v, want a map with server countd, proto 3", hello)
				}
				for _, k := range []string{"version", "id", "modules"} {
					if _, ok := m[k]; !ok {
						t.Fatalf("HELLO 3 lacks %q: %#v", k, m)
					}
				}
			case 2:
				a, ok := hello.([]any)
				if !ok || len(a) != 14 || a[0] != "server" || a[1] != "countd" || a[5] != int64(2) {
					t.Fatalf("HELLO 2 = %#v, want a flat array of 7 pairs", hello)
				}
			}
			if err := c.Get(ctx, "missing-"+strconv.Itoa(proto)).Err(); !errors.Is(err, redis.Nil) {
				t.Fatalf("GET of a missing counter = %v, want redis.Nil", err)
			}
			if got, err := c.Do(ctx, "CLIENT", "GETNAME").Result(); !errors.Is(err, redis.Nil) {
				t.Fatalf("CLIENT GETNAME without a name = %v, %v; want nil", got, err)
			}
		})
	}
}

// TestCommands runs every command through go-redis, RESP3 and RESP2.
func TestCommands(t *testing.T) {
	n := openNode(t, nil)
	ctx := context.Background()
	for _, proto := range []int{3, 2} {
		t.Run(strconv.Itoa(proto), func(t *testing.T) {
			c := dial(t, n.RESPAddr(), func(o *redis.Options) { o.Protocol = proto; o.PoolSize = 1 })
			p := "p" + strconv.Itoa(proto) + "-"
			must := func(what string, got any, err error, want any) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if !equal(got, want) {
					t.Fatalf("%s = %#v, want %#v", what, got, want)
				}
			}
			v, err := c.Incr(ctx, p+"a").Result()
			must("INCR", v, err, int64(1))
			v, err = c.IncrBy(ctx, p+"a", 41).Result()
			must("INCRBY", v, err, int64(42))
			v, err = c.DecrBy(ctx, p+"a", 2).Result()
			must("DECRBY", v, err, int64(40))
			v, err = c.Decr(ctx, p+"b").Result()
			must("DECR", v, err, int64(-1))
			v, err = c.IncrBy(ctx, p+"b", -4).Result()
			must("INCRBY negative", v, err, int64(-5))
			v, err = c.DecrBy(ctx, p+"b", -6).Result()
			must("DECRBY negative", v, err, int64(1))
			s, err := c.Get(ctx, p+"a").Result()
			must("GET", s, err, "40")
			vals, err := c.MGet(ctx, p+"a", p+"none", p+"b").Result()
			must("MGET", vals, err, []any{"40", nil, "1"})
			v, err = c.Exists(ctx, p+"a", p+"none", p+"a").Result()
			must("EXISTS", v, err, int64(2))
			s, err = c.Echo(ctx, "hi there").Result()
			must("ECHO", s, err, "hi there")
			s, err = c.Ping(ctx).Result()
			must("PING", s, err, "PONG")
			got, err := c.Do(ctx, "PING", "x").Result()
			must("PING x", got, err, "x")

			// Expiry: TTL -1 without, -2 missing; EXPIRE's conditions.
			must("TTL without expiry", c.Do(ctx, "TTL", p+"a").Val(), nil, int64(-1))
			must("TTL missing", c.Do(ctx, "TTL", p+"none").Val(), nil, int64(-2))
			must("PTTL missing", c.Do(ctx, "PTTL", p+"none").Val(), nil, int64(-2))
			ok, err := c.ExpireXX(ctx, p+"a", time.Minute).Result()
			must("EXPIRE XX without expiry", ok, err, false)
			ok, err = c.ExpireGT(ctx, p+"a", time.Minute).Result()
			must("EXPIRE GT without expiry (infinite)", ok, err, false)
			ok, err = c.ExpireNX(ctx, p+"a", 100*time.Second).Result()
			must("EXPIRE NX", ok, err, true)
			ok, err = c.ExpireNX(ctx, p+"a", 200*time.Second).Result()
			must("EXPIRE NX again", ok, err, false)
			ok, err = c.ExpireGT(ctx, p+"a", 200*time.Second).Result()
			must("EXPIRE GT later", ok, err, true)
			ok, err = c.ExpireLT(ctx, p+"a", 300*time.Second).Result()
			must("EXPIRE LT later", ok, err, false)
			ttl := c.Do(ctx, "TTL", p+"a").Val().(int64)
			if ttl < 190 || ttl > 200 {
				t.Fatalf("TTL = %d, want about 200", ttl)
			}
			pttl := c.Do(ctx, "PTTL", p+"a").Val().(int64)
			if pttl < 190_000 || pttl > 200_000 {
				t.Fatalf("PTTL = %d, want about 200000", pttl)
			}
			ok, err = c.PExpire(ctx, p+"a", 50*time.Second).Result()
			must("PEXPIRE", ok, err, true)
			ok, err = c.Persist(ctx, p+"a").Result()
			must("PERSIST", ok, err, true)
			ok, err = c.Persist(ctx, p+"a").Result()
			must("PERSIST without expiry", ok, err, false)
			must("TTL after PERSIST", c.Do(ctx, "TTL", p+"a").Val(), nil, int64(-1))
			ok, err = c.Expire(ctx, p+"none", time.Minute).Result()
			must("EXPIRE missing", ok, err, false)
			c.Incr(ctx, p+"gone")
			got, err = c.Do(ctx, "EXPIRE", p+"gone", "-1").Result()
			must("EXPIRE -1 deletes", got, err, int64(1))
			must("EXISTS after EXPIRE -1", c.Exists(ctx, p+"gone").Val(), nil, int64(0))

			v, err = c.Del(ctx, p+"b", p+"none", p+"b").Result()
			must("DEL", v, err, int64(1))
			if err := c.Get(ctx, p+"b").Err(); !errors.Is(err, redis.Nil) {
				t.Fatalf("GET after DEL = %v, want nil", err)
			}

			// Connection state.
			must("SELECT 0", c.Do(ctx, "SELECT", 0).Val(), nil, "OK")
			must("CLIENT SETNAME", c.Do(ctx, "CLIENT", "SETNAME", "me").Val(), nil, "OK")
			must("CLIENT GETNAME", c.Do(ctx, "CLIENT", "GETNAME").Val(), nil, "me")
			must("CLIENT SETINFO", c.Do(ctx, "CLIENT", "SETINFO", "LIB-NAME", "x").Val(), nil, "OK")
			if id, err := c.ClientID(ctx).Result(); err != nil || id < 1 {
				t.Fatalf("CLIENT ID = %d, %v", id, err)
			}
			if cnt, err := c.Do(ctx, "COMMAND", "COUNT").Int64(); err != nil || cnt < 26 {
				t.Fatalf("COMMAND COUNT = %d, %v", cnt, err)
			}
			info, err := c.Command(ctx).Result()
			if err != nil || info["incr"] == nil || info["incr"].Arity != 2 || info["mget"].LastKeyPos != -1 || !info["get"].ReadOnly {
				t.Fatalf("COMMAND = %v, %v", info["incr"], err)
			}
			docs, err := c.Do(ctx, "COMMAND", "DOCS", "get").Result()
			if err != nil || !strings.Contains(strings.ToLower(stringOf(docs)), "summary") {
				t.Fatalf("COMMAND DOCS get = %#v, %v", docs, err)
			}
			if s, err := c.Info(ctx).Result(); err != nil || !strings.Contains(s, "# Keyspace") || !strings.Contains(s, "role:master") || !strings.Contains(s, "connected_clients:") {
				t.Fatalf("INFO = %q, %v", s, err)
			}
		})
	}
}

// TestKeyspace: SCAN walks every counter once, with MATCH and COUNT, and
// its cursor parses as go-redis wants; a counter present throughout is
// returned though others are created and deleted mid-scan; KEYS and
// DBSIZE.
func TestKeyspace(t *testing.T) {
	n := openNode(t, nil)
	ctx := context.Background()
	c := dial(t, n.RESPAddr(), nil)
	want := map[string]bool{}
	for i := range 50 {
		name := "k" + strconv.Itoa(i)
		c.Incr(ctx, name)
		want[name] = true
	}
	if size, err := c.DBSize(ctx).Result(); err != nil || size != 50 {
		t.Fatalf("DBSIZE = %d, %v", size, err)
	}
	seen := map[string]int{}
	var cursor uint64
	for calls := 0; ; calls++ {
		keys, next, err := c.Scan(ctx, cursor, "", 7).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			seen[k]++
		}
		if calls == 1 { // churn mid-scan
			c.Incr(ctx, "new1")
			c.Del(ctx, "k0")
			want["k0"] = false
		}
		cursor = next
		if cursor == 0 {
			break
		}
		if calls > 50 {
			t.Fatal("SCAN never ends")
		}
	}
	for k, present := range want {
		if present && seen[k] != 1 {
			t.Fatalf("SCAN returned %s %d times, want once", k, seen[k])
		}
	}
	keys, _, err := c.Scan(ctx, 0, "k1*", 1000).Result()
	if err != nil || len(keys) != 11 {
		t.Fatalf("SCAN MATCH k1* = %v, %v; want k1, k10..k19", keys, err)
	}
	keys, err = c.Keys(ctx, "k4?").Result()
	if err != nil || strings.Join(keys, ",") != "k40,k41,k42,k43,k44,k45,k46,k47,k48,k49" {
		t.Fatalf("KEYS k4? = %v, %v", keys, err)
	}
}

// TestErrors: each refusal in Redis's words, and the connection still
// works after.
func TestErrors(t *testing.T) {
	n := openNode(t, nil)
	ctx := context.Background()
	c := dial(t, n.RESPAddr(), func(o *redis.Options) { o.PoolSize = 1 })
	c.Set(ctx, "x", 1, 0) // unknown: SET
	cases := []struct {
		args []any
		want string
	}{
		{[]any{"SET", "x", "1"}, "ERR unknown command 'SET', with args beginning with: 'x' '1' "},
		{[]any{"INCR"}, "ERR wrong number of arguments for 'incr' command"},
		{[]any{"GET", "a", "b"}, "ERR wrong number of arguments for 'get' command"},
		{[]any{"INCRBY", "x", "ten"}, "ERR value is not an integer or out of range"},
		{[]any{"INCRBY", "x", "01"}, "ERR value is not an integer or out of range"},
		{[]any{"INCRBY", "x", "9223372036854775808"}, "ERR value is not an integer or out of range"},
		{[]any{"INCRBY", "x", "9007199254740993"}, "ERR increment out of range for countd: at most 9007199254740992 either way"},
		{[]any{"INCR", "bad name"}, "ERR invalid counter name 'bad name'"},
		{[]any{"GET", "a/b"}, "ERR invalid counter name 'a/b'"},
		{[]any{"SELECT", "1"}, "ERR DB index is out of range"},
		{[]any{"SELECT", "x"}, "ERR value is not an integer or out of range"},
		{[]any{"EXPIRE", "x", "10", "NX", "XX"}, "ERR NX and XX, GT or LT options at the same time are not compatible"},
		{[]any{"EXPIRE", "x", "10", "GT", "LT"}, "ERR GT and LT options at the same time are not compatible"},
		{[]any{"EXPIRE", "x", "10", "SOON"}, "ERR Unsupported option SOON"},
		{[]any{"EXPIRE", "x", "9223372036854775807"}, "ERR invalid expire time in 'expire' command"},
		{[]any{"CLIENT", "KILL"}, "ERR unknown subcommand 'KILL'. Try CLIENT HELP."},
		{[]any{"CLIENT", "ID", "x"}, "ERR wrong number of arguments for 'client|id' command"},
		{[]any{"COMMAND", "COUNT", "x"}, "ERR wrong number of arguments for 'command|count' command"},
		{[]any{"CLIENT", "SETNAME", "a b"}, "ERR Client names cannot contain spaces, newlines or special characters."},
		{[]any{"HELLO", "4"}, "NOPROTO unsupported protocol version"},
		{[]any{"AUTH", "secret"}, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"},
		{[]any{"SCAN", "x"}, "ERR invalid cursor"},
		{[]any{"SCAN", "0", "COUNT"}, "ERR syntax error"},
	}
	for _, tc := range cases {
		err := c.Do(ctx, tc.args...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	// Overflow: nothing changed.
	if err := c.IncrBy(ctx, "big", 1<<53).Err(); err != nil {
		t.Fatal(err)
	}
	for range 1022 { // 1023 * 2^53 < 2^63 - 1 < 1024 * 2^53
		if err := c.IncrBy(ctx, "big", 1<<53).Err(); err != nil {
			t.Fatal(err)
		}
	}
	before := c.Get(ctx, "big").Val()
	if err := c.IncrBy(ctx, "big", 1<<53).Err(); err == nil || err.Error() != "ERR increment or decrement would overflow" {
		t.Fatalf("INCRBY past 2^63 = %v, want the overflow error", err)
	}
	if after := c.Get(ctx, "big").Val(); after != before {
		t.Fatalf("a refused INCRBY changed the counter: %s -> %s", before, after)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after the errors: %v", err)
	}
}

// TestPipelineIsOneCommit: a pipeline of changes on a durable node gets
// each reply in order, a GET within it sees the changes before it, and
// the run of INCRs is one group commit, not one each.
func TestPipelineIsOneCommit(t *testing.T) {
	n := openNode(t, func(cfg *node.Config) { cfg.Memory = false; cfg.DataDir = t.TempDir() })
	ctx := context.Background()
	c := dial(t, n.RESPAddr(), func(o *redis.Options) { o.PoolSize = 1 })
	if err := c.Incr(ctx, "warm").Err(); err != nil {
		t.Fatal(err)
	}
	commits := func() int {
		t.Helper()
		resp, err := http.Get(n.URL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`(?m)^countd_commit_duration_seconds_count (\d+)`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("no commit count in /metrics")
		}
		v, _ := strconv.Atoi(string(m[1]))
		return v
	}
	before := commits()
	pipe := c.Pipeline()
	var incrs []*redis.IntCmd
	for range 16 {
		incrs = append(incrs, pipe.Incr(ctx, "p"))
	}
	get := pipe.Get(ctx, "p")
	bad := pipe.IncrBy(ctx, "p", 0)
	more := pipe.DecrBy(ctx, "q", 3)
	if _, err := pipe.Exec(ctx); err == nil || !strings.Contains(err.Error(), "increment of 0") {
		t.Fatalf("pipeline: %v, want INCRBY 0's error", err)
	}
	for i, cmd := range incrs {
		if cmd.Val() != int64(i+1) || cmd.Err() != nil {
			t.Fatalf("INCR %d = %d, %v", i, cmd.Val(), cmd.Err())
		}
	}
	if get.Val() != "16" || bad.Err() == nil || more.Val() != -3 {
		t.Fatalf("GET = %q, INCRBY 0 = %v, DECRBY = %d", get.Val(), bad.Err(), more.Val())
	}
	// 16 INCRs: one commit; DECRBY after the GET: one more.
	if got := commits() - before; got != 2 {
		t.Fatalf("the pipeline took %d commits, want 2 (the 16 INCRs in one)", got)
	}
	if body := metricsText(t, n); !strings.Contains(body, `countd_resp_commands_total{command="incr"} 17`) ||
		!regexp.MustCompile(`(?m)^countd_resp_connections [1-9]`).MatchString(body) {
		t.Fatalf("RESP metrics missing or wrong:\n%s", grep(body, "countd_resp"))
	}
}

func metricsText(t *testing.T, n *node.Node) string {
	t.Helper()
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func grep(text, what string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, what) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAuth: with client tokens, every command but AUTH, HELLO, RESET and
// QUIT answers NOAUTH until the connection authenticates, with AUTH token,
// AUTH user token or HELLO 3 AUTH user token (go-redis with a password);
// a wrong token is WRONGPASS; RESET forgets the authentication.
func TestAuth(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := openNode(t, func(cfg *node.Config) { cfg.ClientTokenFile = file })
	ctx := context.Background()
	c := dial(t, n.RESPAddr(), func(o *redis.Options) { o.PoolSize = 1; o.Protocol = 2; o.DisableIdentity = true })
	for _, args := range [][]any{{"GET", "a"}, {"PING"}, {"INCR", "a"}, {"NOSUCH"}, {"COMMAND"}} {
		if err := c.Do(ctx, args...).Err(); err == nil || err.Error() != "NOAUTH Authentication required." {
			t.Fatalf("%v before AUTH = %v, want NOAUTH", args, err)
		}
	}
	if err := c.Do(ctx, "HELLO", "3").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH HELLO must be called") {
		t.Fatalf("HELLO 3 before AUTH = %v", err)
	}
	if err := c.Do(ctx, "AUTH", "wrong").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Fatalf("AUTH wrong = %v, want WRONGPASS", err)
	}
	if err := c.Do(ctx, "AUTH", "s3cret-token").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Incr(ctx, "a").Err(); err != nil {
		t.Fatalf("INCR after AUTH: %v", err)
	}
	if err := c.Do(ctx, "RESET").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, "a").Err(); err == nil || err.Error() != "NOAUTH Authentication required." {
		t.Fatalf("GET after RESET = %v, want NOAUTH", err)
	}
	if err := c.Do(ctx, "AUTH", "anyuser", "s3cret-token").Err(); err != nil {
		t.Fatalf("AUTH user token: %v", err)
	}
	if v, err := c.Get(ctx, "a").Result(); err != nil || v != "1" {
		t.Fatalf("GET = %q, %v", v, err)
	}

	withPass := dial(t, n.RESPAddr(), func(o *redis.Options) { o.Password = "s3cret-token" })
	if v, err := withPass.Incr(ctx, "a").Result(); err != nil || v != 2 {
		t.Fatalf("go-redis with the token (HELLO 3 AUTH): %d, %v", v, err)
	}
	badPass := dial(t, n.RESPAddr(), func(o *redis.Options) { o.Password = "nope" })
	if err := badPass.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("go-redis with a wrong token: %v, want WRONGPASS", err)
	}
}

// TestAcrossNodesAndHTTP: a change over RESP on A is read over HTTP on B,
// and a change over HTTP on B is read over RESP on A.
func TestAcrossNodesAndHTTP(t *testing.T) {
	resp := map[string]string{}
	tc := testcluster.New(t, testcluster.Options{Config: func(name string, cfg *node.Config) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.RESPListener = ln
		resp[name] = ln.Addr().String()
	}})
	if err := tc.Start(2); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := dial(t, resp["A"], nil)
	if err := a.IncrBy(ctx, "x", 5).Err(); err != nil {
		t.Fatal(err)
	}
	until(t, "B reads 5 over HTTP", func() (bool, string) {
		v, err := tc.Get("B", "x")
		return err == nil && v == 5, strconv.FormatInt(v, 10)
	})
	if r := tc.Change("B", "x", -2); r.Err != nil {
		t.Fatal(r.Err)
	}
	until(t, "A reads 3 over RESP", func() (bool, string) {
		v, err := a.Get(ctx, "x").Result()
		return err == nil && v == "3", v
	})
}

func until(t *testing.T, what string, cond poll.Cond) {
	t.Helper()
	if _, err := poll.Until(context.Background(), wait, 5*time.Millisecond, what, cond); err != nil {
		t.Fatal(err)
	}
}

// TestCloseEndsConnections: closing the node closes its RESP port and
// every connection (goleak checks nothing is left running).
func TestCloseEndsConnections(t *testing.T) {
	n := openNode(t, nil)
	addr := n.RESPAddr()
	conn, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
	buf := make([]byte, 64)
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	if k, err := conn.Read(buf); err != nil || string(buf[:k]) != "+PONG\r\n" {
		t.Fatalf("PING = %q, %v", buf[:k], err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if k, err := conn.Read(buf); err == nil {
		t.Fatalf("the connection is open after Close: read %q", buf[:k])
	}
	if c, err := net.DialTimeout("tcp", addr, wait); err == nil {
		c.Close()
		t.Fatal("the RESP port still takes connections after Close")
	}
}

// equal compares go-redis results, whose slices hold any.
func equal(got, want any) bool {
	g, gok := got.([]any)
	w, wok := want.([]any)
	if gok != wok {
		return false
	}
	if !gok {
		return got == want
	}
	if len(g) != len(w) {
		return false
	}
	for i := range g {
		if g[i] != w[i] {
			return false
		}
	}
	return true
}

func stringOf(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []any:
		var parts []string
		for _, e := range v {
			parts = append(parts, stringOf(e))
		}
		return strings.Join(parts, " ")
	case map[any]any:
		var parts []string
		for k, e := range v {
			parts = append(parts, stringOf(k), stringOf(e))
		}
		return strings.Join(parts, " ")
	}
	return ""
}

// TestOversizedCommandBeforeAuth is the attack the guard is for, on a node
// that demands a token: a client that never authenticates sends a
// multibulk count of 2^63 (which kept redcon's parser looping for ever)
// and a bulk length of 10^11 (which it buffered without end). Each gets
// the protocol error at once and is disconnected, and the node still
// serves and closes promptly.
func TestOversizedCommandBeforeAuth(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := openNode(t, func(cfg *node.Config) { cfg.ClientTokenFile = file })
	for _, tc := range []struct{ send, want string }{
		{"*9223372036854775807\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"*1\r\n$100000000000\r\n" + strings.Repeat("x", 1<<20), "-ERR Protocol error: invalid bulk length\r\n"},
	} {
		conn, err := net.DialTimeout("tcp", n.RESPAddr(), wait)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(wait))
		go conn.Write([]byte(tc.send)) // the node may close before it has read it all
		r := bufio.NewReader(conn)
		line, err := r.ReadString('\n')
		if err != nil || line != tc.want {
			t.Fatalf("%.30q: reply %q, %v; want %q", tc.send, line, err, tc.want)
		}
		if _, err := r.ReadByte(); err == nil {
			t.Fatalf("%.30q: the connection is open after the error", tc.send)
		}
		conn.Close()
	}
	c := dial(t, n.RESPAddr(), func(o *redis.Options) { o.Password = "s3cret-token" })
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("PING after the attacks: %v", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("the node did not close")
	}
}
