package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/opencluster/opencluster/rpc/client/clienttest"
)

func TestMain(m *testing.M) {
	// A test that needs a real server process re-executes this binary with
	// execMainEnv set; it then runs the command line, not the tests.
	if os.Getenv(execMainEnv) != "" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// result is what one CLI run produced.
type result struct {
	stdout, stderr string
	code           int
}

// obj decodes stdout as exactly one JSON object.
func (r result) obj(t *testing.T) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("stdout is not a JSON object: %q (%v)", r.stdout, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("stdout has more than one JSON value: %q", r.stdout)
	}
	return m
}

// ok fails the test unless the run succeeded.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 || r.stderr != "" && !strings.HasPrefix(r.stderr, "note:") {
		t.Fatalf("exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
	return r
}

// fails fails the test unless the run exited 1 with "Error: <code>: ...".
func (r result) fails(t *testing.T, code string) result {
	t.Helper()
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: "+code+": ") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("want exit 1 with %s, got exit %d, stderr %q, stdout %q", code, r.code, r.stderr, r.stdout)
	}
	return r
}

// harness is the fake cluster plus the CLI runners below.
type harness struct{ *clienttest.Harness }

// startFake starts fake nodes at addrs; they stop when the test ends.
func startFake(t *testing.T, addrs ...string) *harness {
	return &harness{clienttest.Start(t, addrs...)}
}

// cli runs the command tree in-process against the fake node n1.
func (h *harness) cli(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return h.cliCtx(ctx, map[string]string{envEndpoints: "passthrough:///n1"}, args...)
}

func (h *harness) cliCtx(ctx context.Context, env map[string]string, args ...string) result {
	var stdout, stderr bytes.Buffer
	a := &app{
		stdin:    strings.NewReader(""),
		stdout:   &stdout,
		stderr:   &stderr,
		getenv:   func(k string) string { return env[k] },
		dialOpts: []grpc.DialOption{h.DialOption()},
	}
	code := a.execute(ctx, args)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func num(t *testing.T, m map[string]any, k string) uint64 {
	t.Helper()
	v, ok := m[k].(float64)
	if !ok {
		t.Fatalf("field %q = %v (%T), want a number", k, m[k], m[k])
	}
	return uint64(v)
}

func TestKVCommands(t *testing.T) {
	h := startFake(t, "n1")

	put := h.cli(t, "put", "k", "v1", "-o", "json").ok(t).obj(t)
	v1 := num(t, put, "version")
	if put["key"] != "k" || v1 == 0 || len(put) != 2 {
		t.Fatalf("put = %v", put)
	}
	get := h.cli(t, "get", "k", "-o", "json").ok(t).obj(t)
	if get["key"] != "k" || get["value"] != "v1" || num(t, get, "version") != v1 || len(get) != 3 {
		t.Fatalf("get = %v", get)
	}
	if r := h.cli(t, "get", "k").ok(t); r.stdout != "v1\n" {
		t.Fatalf("get text = %q", r.stdout)
	}
	if r := h.cli(t, "put", "k", "v2").ok(t); !regexp.MustCompile(`^OK version \d+\n$`).MatchString(r.stdout) {
		t.Fatalf("put text = %q", r.stdout)
	}
	v2 := num(t, h.cli(t, "get", "k", "-o", "json").ok(t).obj(t), "version")
	if old := h.cli(t, "get", "k", "--version", "1", "-o", "json").ok(t).obj(t); old["value"] != "v1" {
		t.Fatalf("get --version = %v", old)
	}

	// cas: a stale version fails with FailedPrecondition and still prints
	// the object; the right one succeeds.
	r := h.cli(t, "cas", "k", "v3", "--version", "1", "-o", "json").fails(t, "FailedPrecondition")
	if want := "Error: FailedPrecondition: version mismatch (current " + itoa(v2) + ")\n"; r.stderr != want {
		t.Fatalf("stderr %q, want %q", r.stderr, want)
	}
	if m := r.obj(t); m["succeeded"] != false || num(t, m, "version") != v2 {
		t.Fatalf("failed cas = %v", m)
	}
	m := h.cli(t, "cas", "k", "v3", "--version", itoa(v2), "-o", "json").ok(t).obj(t)
	if m["succeeded"] != true || num(t, m, "version") <= v2 || m["key"] != "k" {
		t.Fatalf("cas = %v", m)
	}
	h.cli(t, "cas", "new", "x", "--version", "0").ok(t)
	h.cli(t, "cas", "new", "y", "--version", "0").fails(t, "FailedPrecondition")

	scan := h.cli(t, "scan", "", "--limit", "1", "-o", "json").ok(t).obj(t)
	kvs, _ := scan["kvs"].([]any)
	if len(kvs) != 1 || scan["more"] != true {
		t.Fatalf("scan = %v", scan)
	}
	if first := kvs[0].(map[string]any); first["key"] != "k" || first["value"] != "v3" {
		t.Fatalf("scan[0] = %v", first)
	}
	if r := h.cli(t, "scan", "ne").ok(t); !strings.Contains(r.stdout, "new") || !strings.HasPrefix(r.stdout, "KEY") {
		t.Fatalf("scan text = %q", r.stdout)
	}

	del := h.cli(t, "del", "k", "-o", "json").ok(t).obj(t)
	if del["key"] != "k" || num(t, del, "version") == 0 {
		t.Fatalf("del = %v", del)
	}
	r = h.cli(t, "get", "k", "-o", "json").fails(t, "NotFound")
	if r.stdout != "" {
		t.Fatalf("failed get printed %q", r.stdout)
	}

	// Bytes that are not UTF-8 come back base64-encoded.
	h.cli(t, "put", "bin\xff", "\xfe\x00").ok(t)
	bin := h.cli(t, "get", "bin\xff", "-o", "json").ok(t).obj(t)
	if bin["key_b64"] != "Ymlu/w==" || bin["value_b64"] != "/gA=" {
		t.Fatalf("binary get = %v", bin)
	}
}

// held reports whether the fake holds the named lock name.
func (h *harness) held(name string) bool {
	return h.Fake.NamedHeld(name)
}

func itoa(v uint64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestCommandErrors(t *testing.T) {
	h := startFake(t, "n1")
	for _, tc := range []struct {
		args []string
		code string
	}{
		{[]string{"get", "missing"}, "NotFound"},
		{[]string{"put", "", "v"}, "InvalidArgument"},                                                       // the server's answer
		{[]string{"put", "k", "v", "--fence", "nocolon"}, "InvalidArgument"},                                // ours
		{[]string{"put", "k", "v", "--fence", "L:x"}, "InvalidArgument"},                                    // ours
		{[]string{"put", "k", "v", "--fence", "L:1", "--code", strings.Repeat("a", 32)}, "InvalidArgument"}, // ours
		{[]string{"put", "k", "v", "--code", strings.Repeat("0", 32)}, "FailedPrecondition"},                // not a holder
		{[]string{"get"}, "InvalidArgument"},
		{[]string{"get", "k", "--bogus"}, "InvalidArgument"},
		{[]string{"-o", "yaml", "get", "k"}, "InvalidArgument"},
		{[]string{"cas", "k", "v"}, "InvalidArgument"}, // --version is required
		{[]string{"nosuchcommand"}, "InvalidArgument"},
		{[]string{"lock", "frob"}, "InvalidArgument"},
		{[]string{"lock", "list", "extra"}, "InvalidArgument"},
		{[]string{"lock", "release", "L", strings.Repeat("0", 32)}, "FailedPrecondition"},
		{[]string{"lock", "restrict", "T"}, "InvalidArgument"},
		{[]string{"lock", "show", "nope"}, "NotFound"},
		{[]string{"lock", "keepalive", "L", "c", "--kind", "weird"}, "InvalidArgument"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			h.cli(t, append([]string{"-o", "json"}, tc.args...)...).fails(t, tc.code)
		})
	}
}

func TestEndpoints(t *testing.T) {
	h := startFake(t, "n1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nowhere := map[string]string{envEndpoints: "passthrough:///nowhere"}
	h.cliCtx(ctx, nowhere, "put", "k", "v", "--timeout", "2s").fails(t, "Unavailable")
	h.cliCtx(ctx, nowhere, "--endpoints", "passthrough:///nowhere, passthrough:///n1", "put", "k", "v").ok(t)
	h.cliCtx(ctx, nil, "--endpoints", " , ", "put", "k", "v").fails(t, "InvalidArgument")
}

func TestLockCommands(t *testing.T) {
	h := startFake(t, "n1")
	acq := h.cli(t, "lock", "acquire", "L", "--ttl", "1m", "-o", "json").ok(t).obj(t)
	code, _ := acq["code"].(string)
	if acq["name"] != "L" || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(code) || num(t, acq, "fence") != 1 || len(acq) != 3 {
		t.Fatalf("acquire = %v", acq)
	}
	h.cli(t, "lock", "acquire", "L", "--wait", "50ms").fails(t, "DeadlineExceeded")

	show := h.cli(t, "lock", "show", "L", "-o", "json").ok(t).obj(t)
	locks := show["locks"].([]any)
	if l := locks[0].(map[string]any); len(locks) != 1 || l["held"] != true || l["kind"] != "named" || l["ttl"] != "1m0s" {
		t.Fatalf("show = %v", show)
	}
	if r := h.cli(t, "lock", "show", "L").ok(t); !strings.Contains(r.stdout, "held:") || !strings.Contains(r.stdout, "fence:") || strings.Contains(r.stdout, code) {
		t.Fatalf("show text = %q", r.stdout)
	}
	if r := h.cli(t, "lock", "list", "--held").ok(t); !strings.HasPrefix(r.stdout, "NAME") || !strings.Contains(r.stdout, "\nL ") {
		t.Fatalf("list text = %q", r.stdout)
	}
	list := h.cli(t, "lock", "list", "--prefix", "X", "-o", "json").ok(t).obj(t)
	if l, _ := list["locks"].([]any); len(l) != 0 {
		t.Fatalf("list --prefix X = %v", list)
	}

	h.cli(t, "lock", "release", "L", strings.Repeat("1", 32)).fails(t, "FailedPrecondition")
	rel := h.cli(t, "lock", "release", "L", code, "-o", "json").ok(t).obj(t)
	if rel["name"] != "L" || rel["released"] != true {
		t.Fatalf("release = %v", rel)
	}
	h.cli(t, "lock", "release", "L", code).fails(t, "FailedPrecondition")
	again := h.cli(t, "lock", "acquire", "L", "-o", "json").ok(t).obj(t)
	if num(t, again, "fence") != 2 {
		t.Fatalf("second grant = %v", again)
	}
	// The text form tells the user the lock is not kept alive.
	if r := h.cli(t, "lock", "acquire", "M").ok(t); !strings.Contains(r.stderr, "not kept alive") || !strings.Contains(r.stdout, "code") {
		t.Fatalf("acquire text: stdout %q stderr %q", r.stdout, r.stderr)
	}
}

func TestRestrictCommands(t *testing.T) {
	h := startFake(t, "n1")
	tx := h.cli(t, "lock", "restrict", "T", "--write", "a", "--read", "b", "--snapshot", "-o", "json").ok(t).obj(t)
	code := tx["code"].(string)
	if tx["name"] != "T" || len(code) != 32 || num(t, tx, "fence") == 0 || len(tx) != 4 {
		t.Fatalf("restrict = %v", tx)
	}
	if _, ok := tx["start_version"]; !ok {
		t.Fatalf("restrict = %v", tx)
	}
	if v := num(t, h.cli(t, "put", "a", "1", "--code", code, "-o", "json").ok(t).obj(t), "version"); v != 0 {
		t.Fatalf("provisional put version = %d", v)
	}
	h.cli(t, "put", "b", "1", "--code", code).fails(t, "FailedPrecondition") // READ key
	if r := h.cli(t, "get", "a", "--code", code).ok(t); r.stdout != "1\n" {
		t.Fatalf("get --code = %q", r.stdout)
	}
	h.cli(t, "get", "a").fails(t, "NotFound")
	show := h.cli(t, "lock", "show", "T", "-o", "json").ok(t).obj(t)
	info := show["locks"].([]any)[0].(map[string]any)
	if info["kind"] != "restrictive" || info["isolation"] != "snapshot" || len(info["keys"].([]any)) != 2 {
		t.Fatalf("show = %v", info)
	}
	if r := h.cli(t, "lock", "show", "T").ok(t); !strings.Contains(r.stdout, "isolation:") || !strings.Contains(r.stdout, "write") {
		t.Fatalf("show text = %q", r.stdout)
	}

	commit := h.cli(t, "lock", "commit", "T", code, "-o", "json").ok(t).obj(t)
	cv := num(t, commit, "commit_version")
	if cv == 0 || len(commit) != 1 {
		t.Fatalf("commit = %v", commit)
	}
	if get := h.cli(t, "get", "a", "-o", "json").ok(t).obj(t); num(t, get, "version") != cv {
		t.Fatalf("get after commit = %v", get)
	}

	code2 := h.cli(t, "lock", "restrict", "T", "--write", "a", "-o", "json").ok(t).obj(t)["code"].(string)
	h.cli(t, "put", "a", "2", "--code", code2).ok(t)
	ab := h.cli(t, "lock", "abort", "T", code2, "-o", "json").ok(t).obj(t)
	if ab["aborted"] != true {
		t.Fatalf("abort = %v", ab)
	}
	h.cli(t, "lock", "commit", "T", code2).fails(t, "Aborted")
	if r := h.cli(t, "get", "a").ok(t); r.stdout != "1\n" {
		t.Fatalf("aborted write visible: %q", r.stdout)
	}
}

func TestLockKeepAlive(t *testing.T) {
	h := startFake(t, "n1")
	env := map[string]string{envEndpoints: "passthrough:///n1"}
	code := h.cli(t, "lock", "acquire", "L", "--ttl", "600ms", "-o", "json").ok(t).obj(t)["code"].(string)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result)
	go func() { done <- h.cliCtx(ctx, env, "lock", "keepalive", "L", code) }()
	time.Sleep(1500 * time.Millisecond) // well past the ttl
	if n := h.Fake.KeepAliveCount(code); n < 4 {
		t.Fatalf("keep-alives = %d", n)
	}
	h.cli(t, "lock", "show", "L").ok(t)
	cancel()
	r := (<-done).ok(t)
	if lines := strings.Count(r.stdout, "renewed L"); lines < 4 {
		t.Fatalf("keepalive printed %q", r.stdout)
	}

	// Lost while kept alive: exits 1 with FailedPrecondition and the JSON.
	code = h.cli(t, "lock", "acquire", "L", "--ttl", "2s", "-o", "json").ok(t).obj(t)["code"].(string)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	go func() { done <- h.cliCtx(ctx2, env, "lock", "keepalive", "L", code, "-o", "json") }()
	clienttest.WaitFor(ctx2, nil, func() (bool, error) { return h.Fake.KeepAliveCount(code) > 0, nil })
	h.Fake.DropLock("L")
	r = (<-done).fails(t, "FailedPrecondition")
	if m := r.obj(t); m["lost"] != true || m["name"] != "L" || m["reason"] == "" {
		t.Fatalf("keepalive json = %v", m)
	}

	// A wrong code is refused at once.
	h.cli(t, "lock", "keepalive", "L", strings.Repeat("2", 32)).fails(t, "FailedPrecondition")

	// Lost before the keepalive attached: the same JSON report (CI once
	// caught the loss landing between Attach's first renewal and its
	// return, and the command printed nothing).
	code = h.cli(t, "lock", "acquire", "L", "--ttl", "2s", "-o", "json").ok(t).obj(t)["code"].(string)
	h.Fake.DropLock("L")
	r = h.cliCtx(ctx2, env, "lock", "keepalive", "L", code, "-o", "json").fails(t, "FailedPrecondition")
	if m := r.obj(t); m["lost"] != true || m["name"] != "L" || m["renewals"] != float64(0) {
		t.Fatalf("keepalive json after a loss before attaching = %v", m)
	}

	// A restrictive lock that is lost reports Aborted.
	code = h.cli(t, "lock", "restrict", "T", "--write", "a", "--ttl", "2s", "-o", "json").ok(t).obj(t)["code"].(string)
	go func() { done <- h.cliCtx(ctx2, env, "lock", "keepalive", "T", code, "--kind", "restrictive") }()
	clienttest.WaitFor(ctx2, nil, func() (bool, error) { return h.Fake.KeepAliveCount(code) > 0, nil })
	h.Fake.DropLock("T")
	(<-done).fails(t, "Aborted")
}

func TestLockRun(t *testing.T) {
	h := startFake(t, "n1")
	r := h.cli(t, "lock", "run", "L", "--ttl", "1m", "--",
		"sh", "-c", `echo "$OPENCLUSTER_LOCK_NAME $OPENCLUSTER_LOCK_FENCE ${#OPENCLUSTER_LOCK_CODE}"; exit 3`)
	if r.code != 3 || r.stdout != "L 1 32\n" || r.stderr != "" {
		t.Fatalf("run = %+v", r)
	}
	// Released when the command exited.
	h.cli(t, "lock", "show", "L").fails(t, "NotFound")
	h.cli(t, "lock", "run", "L", "--", "true").ok(t)

	// The lock is held while the command runs.
	h.cli(t, "lock", "run", "L", "--", "sh", "-c", "exit 0").ok(t)
	if r := h.cli(t, "lock", "run", "L", "--wait", "1s", "--", "sh", "-c", "exit 0"); r.code != 0 {
		t.Fatalf("run = %+v", r)
	}

	// A lost lock kills the command.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan result)
	start := time.Now()
	go func() {
		done <- h.cliCtx(ctx, map[string]string{envEndpoints: "passthrough:///n1"},
			"lock", "run", "L", "--ttl", "2s", "--", "sleep", "5")
	}()
	clienttest.WaitFor(ctx, nil, func() (bool, error) { return h.held("L"), nil })
	h.Fake.DropLock("L")
	(<-done).fails(t, "FailedPrecondition")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("command not killed: took %s", d)
	}

	// A command that cannot start releases the lock.
	h.cli(t, "lock", "run", "L", "--", "/nonexistent/cmd").fails(t, "InvalidArgument")
	h.cli(t, "lock", "show", "L").fails(t, "NotFound")
	h.cli(t, "lock", "run", "L").fails(t, "InvalidArgument")
}
