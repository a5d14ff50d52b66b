package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchCLI runs the command tree in-process, with no environment.
func benchCLI(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	code := a.execute(ctx, args)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// TestBenchFlagErrors: bad flags fail with InvalidArgument naming the
// flag, before anything is started.
func TestBenchFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--concurrency", "16,0"}, `--concurrency: "0" is not a number in 1..1024`},
		{[]string{"--concurrency", "x"}, `--concurrency: "x"`},
		{[]string{"--concurrency", ","}, "--concurrency is empty"},
		{[]string{"--workload", "put,nope"}, `--workload: unknown workload "nope"`},
		{[]string{"--target", "mysql"}, `--target/--compare: unknown target "mysql"`},
		{[]string{"--compare", "opencluster"}, "--compare opencluster: that is the --target"},
		{[]string{"--compare", "etcd,etcd"}, `"etcd" given twice`},
		{[]string{"--duration", "0s"}, "--duration must be positive"},
		{[]string{"--warmup", "-1s"}, "--warmup must not be negative"},
		{[]string{"--nodes", "0"}, "--nodes must be at least 1"},
		{[]string{"--rounds", "0"}, "--rounds must be in 1..20, not 0"},
		{[]string{"--rounds", "21"}, "--rounds must be in 1..20, not 21"},
		{[]string{"--target", "redis", "--nodes", "3"}, "--nodes: 3, but redis runs as one server only"},
		{[]string{"--target", "etcd", "--endpoints", "127.0.0.1:1"}, "--endpoints: given, but opencluster is not a target"},
		{[]string{"--etcd-endpoints", "127.0.0.1:1"}, "--etcd-endpoints: given, but etcd is not a target"},
		{[]string{"--workload", "put", "--cpuprofile", "/nonexistent/dir/cpu.pprof"}, "--cpuprofile: open /nonexistent/dir/cpu.pprof"},
		{[]string{"extra"}, "unknown command"},
	} {
		r := benchCLI(t, 10*time.Second, append([]string{"bench"}, tc.args...)...).fails(t, "InvalidArgument")
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: stderr %q, want %q", tc.args, r.stderr, tc.want)
		}
	}
}

// TestBenchOpenCluster is a short real run: the bench starts a node (this
// test binary re-executed as `opencluster start`), runs three workloads
// for a second each, checks them, and prints the JSON results.
func TestBenchOpenCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	t.Setenv(execMainEnv, "1") // the server child runs main, not the tests
	profile := filepath.Join(t.TempDir(), "cpu.pprof")
	r := benchCLI(t, 2*time.Minute, "bench", "--workload", "put,lock-contended,transfer-10",
		"--duration", "1s", "--warmup", "200ms", "--concurrency", "4", "--buckets", "8", "--seed", "7", "-o", "json",
		"--cpuprofile", profile)
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s\nstdout:\n%s", r.code, r.stderr, r.stdout)
	}
	var out struct {
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("stdout is not the results object: %v\n%s", err, r.stdout)
	}
	var names []string
	for _, res := range out.Results {
		names = append(names, res["workload"].(string))
		if res["target"] != "opencluster" || res["concurrency"] != 4.0 || res["nodes"] != 1.0 || res["round"] != 1.0 || len(res) != 11 {
			t.Errorf("result %v", res)
		}
		if res["ops_per_sec"].(float64) <= 0 || res["errors"] != 0.0 || res["rss_mb"].(float64) <= 0 || res["p99_ms"].(float64) <= 0 {
			t.Errorf("result %v: want ops, no errors, an RSS and a p99", res)
		}
	}
	if got := strings.Join(names, ","); got != "put,lock-contended,transfer-10" {
		t.Fatalf("workloads %s", got)
	}
	for _, want := range []string{"bench: seed 7", "[3/3] opencluster transfer-10 c=4:"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	// A CPU profile is gzipped protobuf; an empty or unfinished one is not.
	if b, err := os.ReadFile(profile); err != nil || len(b) < 100 || !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Errorf("--cpuprofile wrote %d bytes (%v), want a gzipped profile", len(b), err)
	}
}
