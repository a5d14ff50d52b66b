package moves

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencluster/opencluster/internal/bench"
)

// Result is what Run measured. Durations are in seconds or milliseconds
// as their names say; bytes are bytes.
type Result struct {
	Machine  Machine        `json:"machine"`
	Settings Settings       `json:"settings"`
	Move     MoveResult     `json:"move"`
	Workload WorkloadResult `json:"workload"`
	Join     JoinResult     `json:"join"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs     int    `json:"cpus"`
	MemoryMB int64  `json:"memory_mb"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	Go       string `json:"go"`
}

// Settings are the sizes of the run.
type Settings struct {
	BucketMB  int     `json:"bucket_mb"`
	ClusterMB int     `json:"cluster_mb"`
	Buckets   int     `json:"buckets"`
	ValueKB   int     `json:"value_kb"`
	Clients   int     `json:"clients"`
	PutBytes  int     `json:"put_bytes"`
	WindowS   float64 `json:"window_s"`
	Seed      uint64  `json:"seed"`
}

// MoveResult is part 1: one MoveReplica of a loaded bucket to a new node.
type MoveResult struct {
	Bucket int `json:"bucket"`
	// From and To are node ids; From is a voter that does not lead.
	From string `json:"from"`
	To   string `json:"to"`
	// Keys and LoadedBytes (keys plus values) were put into the bucket in
	// LoadS seconds.
	Keys        int     `json:"keys"`
	LoadedBytes int64   `json:"loaded_bytes"`
	LoadS       float64 `json:"load_s"`
	// Seconds is the MoveReplica call's duration.
	Seconds float64 `json:"seconds"`
	// DataDirGrowthBytes is how much the receiving node's data directory
	// grew across the call: the bytes moved, as measured.
	DataDirGrowthBytes int64 `json:"data_dir_growth_bytes"`
	// DiskWriteBytes is what the receiving process wrote to storage
	// meanwhile (/proc/PID/io write_bytes; -1 where unknown).
	DiskWriteBytes int64 `json:"disk_write_bytes"`
	// MBPerS is LoadedBytes over Seconds, MiB/s.
	MBPerS float64 `json:"mb_per_s"`
	// Method says how the bytes were measured.
	Method string `json:"method"`
}

// Latency summarises the puts of one window (or part of one).
type Latency struct {
	Ops       uint64  `json:"ops"`
	Errors    int     `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	// ErrorSample is the first error's message ("" without errors).
	ErrorSample string `json:"error_sample,omitempty"`
}

// WorkloadResult is part 2: the put workload without and during a move.
type WorkloadResult struct {
	Bucket int    `json:"bucket"`
	From   string `json:"from"`
	To     string `json:"to"`
	// Baseline is the window without a move; BaselineBucket its puts to
	// the bucket that moves in the next window.
	Baseline       Latency `json:"baseline"`
	BaselineBucket Latency `json:"baseline_bucket"`
	// DuringMove is the window that starts with the move; DuringBucket
	// its puts to the moving bucket; InFlight the puts of the window that
	// completed while the move was in flight.
	DuringMove   Latency `json:"during_move"`
	DuringBucket Latency `json:"during_move_bucket"`
	InFlight     Latency `json:"in_flight"`
	// WindowS is the length of the move window, MoveS the move's.
	WindowS float64 `json:"window_s"`
	MoveS   float64 `json:"move_s"`
}

// JoinResult is part 3: a fourth node joins a loaded three-node cluster
// with the rebalancer on.
type JoinResult struct {
	LoadedBytes int64   `json:"loaded_bytes"`
	Keys        int     `json:"keys"`
	LoadS       float64 `json:"load_s"`
	// Seconds is from the new node's start until it held its share of
	// replicas with no move in progress; LeadersS until the leaderships
	// were balanced too (-1 if not within LeaderWait after).
	Seconds  float64 `json:"seconds"`
	LeadersS float64 `json:"leaders_s"`
	// Replicas and Leaders are the new node's counts at the end; MeanReplicas
	// the mean over the four nodes.
	Replicas     int     `json:"replicas"`
	Leaders      int     `json:"leaders"`
	MeanReplicas float64 `json:"mean_replicas"`
	// MovesSeen is how many distinct moves Status showed meanwhile (polled
	// every 200ms, so short ones may be missed).
	MovesSeen int `json:"moves_seen"`
	// DataDirGrowthBytes and DiskWriteBytes are the new node's, as in
	// MoveResult, up to the balanced status.
	DataDirGrowthBytes int64 `json:"data_dir_growth_bytes"`
	DiskWriteBytes     int64 `json:"disk_write_bytes"`
	// Members are every member's holdings at the end.
	Members []Holding `json:"members"`
}

// Holding is a member's replica and leader counts.
type Holding struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Replicas int    `json:"replicas"`
	Leaders  int    `json:"leaders"`
}

// latencyOf summarises h over a window of d.
func latencyOf(h *bench.Histogram, errs int, errSample string, d time.Duration) Latency {
	l := Latency{Ops: h.Count(), Errors: errs, ErrorSample: errSample,
		P50ms: ms(h.Quantile(0.5)), P99ms: ms(h.Quantile(0.99)), MaxMs: ms(h.Max())}
	if d > 0 {
		l.OpsPerSec = float64(l.Ops) / d.Seconds()
	}
	return l
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// machine describes this machine.
func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
					m.MemoryMB = kb / 1024
				}
			}
		}
	}
	return m
}

// WriteJSON writes r as one indented JSON object.
func WriteJSON(w io.Writer, r Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r as a few labelled lines and a latency table.
func WriteText(w io.Writer, r Result) error {
	mb := func(b int64) float64 { return float64(b) / (1 << 20) }
	m, s := r.Machine, r.Settings
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "machine: %d CPUs, %d MB, %s/%s, %s\n", m.CPUs, m.MemoryMB, m.OS, m.Arch, m.Go)
	fmt.Fprintf(bw, "settings: bucket %d MiB, cluster %d MiB, %d buckets, %d KiB values, %d clients x %d-byte puts, %.0fs windows, seed %d\n",
		s.BucketMB, s.ClusterMB, s.Buckets, s.ValueKB, s.Clients, s.PutBytes, s.WindowS, s.Seed)
	mv := r.Move
	fmt.Fprintf(bw, "\n1. move of bucket %d (%d keys, %.1f MiB loaded in %.1fs) from node %s to new node %s:\n",
		mv.Bucket, mv.Keys, mb(mv.LoadedBytes), mv.LoadS, mv.From, mv.To)
	fmt.Fprintf(bw, "   %.2fs (%.1f MiB/s); receiver's data dir grew %.1f MiB, it wrote %.1f MiB to disk (%s)\n",
		mv.Seconds, mv.MBPerS, mb(mv.DataDirGrowthBytes), mb(mv.DiskWriteBytes), mv.Method)
	wl := r.Workload
	fmt.Fprintf(bw, "\n2. puts without and during a move of bucket %d (node %s to %s, %.2fs; move window %.1fs):\n",
		wl.Bucket, wl.From, wl.To, wl.MoveS, wl.WindowS)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "window\tops\tops/s\tp50 ms\tp99 ms\tmax ms\terrors\t")
	for _, row := range []struct {
		name string
		l    Latency
	}{
		{"no move", wl.Baseline}, {"no move, that bucket", wl.BaselineBucket},
		{"during move", wl.DuringMove}, {"during move, that bucket", wl.DuringBucket},
		{"while the move was in flight", wl.InFlight},
	} {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t\n", row.name, row.l.Ops, row.l.OpsPerSec, row.l.P50ms, row.l.P99ms, row.l.MaxMs, row.l.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	j := r.Join
	fmt.Fprintf(bw, "\n3. a 4th node joins 3 nodes holding %.1f MiB (%d keys, loaded in %.1fs), rebalancer on:\n",
		mb(j.LoadedBytes), j.Keys, j.LoadS)
	leadersAt := "not balanced within --leader-wait after"
	if j.LeadersS >= 0 {
		leadersAt = fmt.Sprintf("balanced after %.1fs", j.LeadersS)
	}
	fmt.Fprintf(bw, "   its share of replicas after %.1fs (%d replicas, mean %.1f; %d moves seen); leaders %s (it leads %d)\n",
		j.Seconds, j.Replicas, j.MeanReplicas, j.MovesSeen, leadersAt, j.Leaders)
	fmt.Fprintf(bw, "   its data dir grew %.1f MiB, it wrote %.1f MiB to disk\n", mb(j.DataDirGrowthBytes), mb(j.DiskWriteBytes))
	for _, h := range j.Members {
		fmt.Fprintf(bw, "   member %s (%s): %d replicas, %d leaders\n", h.ID, h.State, h.Replicas, h.Leaders)
	}
	return bw.Flush()
}
