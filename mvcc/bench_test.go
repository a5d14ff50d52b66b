package mvcc

import (
	"fmt"
	"testing"

	"github.com/opencluster/opencluster/mvcc/ts"
)

// Benchmarks of the key encoding and the read and write paths. Run and
// compare with
//
//	go test ./mvcc -run '^$' -bench . -count 10 > new.txt
//	benchstat old.txt new.txt
//
// Reads run against a compacted database (sstables, block cache warm) of
// benchKeys keys, each with benchVersions versions at timestamps 10, 20, ...

const (
	benchKeys     = 10_000
	benchVersions = 10
	benchBucket   = Bucket(3)
)

func benchKey(i int) []byte { return fmt.Appendf(nil, "user/%03d/%06d", i%10, i) }

// benchEngine builds the database the read benchmarks share.
func benchEngine(b *testing.B) *Engine {
	e := newTestEngine(b)
	w := e.NewBatch()
	value := make([]byte, 64)
	for i := range benchKeys {
		k := benchKey(i)
		for v := 1; v <= benchVersions; v++ {
			must(b, PutVersion(w, benchBucket, k, ts.Timestamp(10*v), value))
		}
		if w.Len() > 4<<20 {
			must(b, w.Commit(nil))
			must(b, w.Close())
			w = e.NewBatch()
		}
	}
	must(b, w.Commit(nil))
	must(b, w.Close())
	flushAndCompact(b, e)
	return e
}

var (
	sinkKey   []byte
	sinkValue Value
	sinkKVs   []KV
)

func BenchmarkVersionKey(b *testing.B) {
	for _, n := range []int{8, 64, 256} {
		b.Run(fmt.Sprintf("keylen=%d", n), func(b *testing.B) {
			key := make([]byte, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				sinkKey = VersionKey(benchBucket, key, 1<<40)
			}
		})
	}
}

func BenchmarkGet(b *testing.B) {
	e := benchEngine(b)
	for _, c := range []struct {
		name  string
		key   func(i int) []byte
		at    ts.Timestamp
		found bool
	}{
		// The newest of the key's versions.
		{"hit", benchKey, Latest, true},
		// A key that sorts between two stored keys.
		{"miss", func(i int) []byte { return append(benchKey(i), '-') }, Latest, false},
		// Halfway down the key's 10 versions: reads @50.
		{"at-ts", benchKey, 55, true},
	} {
		b.Run(fmt.Sprintf("versions=%d/case=%s", benchVersions, c.name), func(b *testing.B) {
			keys := make([][]byte, benchKeys)
			for i := range keys {
				keys[i] = c.key((i * 7919) % benchKeys) // a fixed, scattered order
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				v, err := Get(e.DB(), benchBucket, keys[i%len(keys)], c.at)
				if err != nil || v.Found != c.found {
					b.Fatalf("Get(%q) = %s, %v", keys[i%len(keys)], fmtValue(v), err)
				}
				sinkValue = v
				i++
			}
		})
	}
}

func BenchmarkPutVersion(b *testing.B) {
	for _, size := range []int{16, 256} {
		b.Run(fmt.Sprintf("valuesize=%d", size), func(b *testing.B) {
			e := newTestEngine(b)
			w := e.NewBatch()
			defer w.Close()
			keys := make([][]byte, benchKeys)
			for i := range keys {
				keys[i] = benchKey(i)
			}
			value := make([]byte, size)
			b.SetBytes(int64(len(keys[0]) + size))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := PutVersion(w, benchBucket, keys[i%len(keys)], ts.Timestamp(1+i), value); err != nil {
					b.Fatal(err)
				}
				i++
				// Batches the size of a Raft apply; keep the batch from
				// growing without bound.
				if i%1000 == 0 {
					w.Reset()
				}
			}
		})
	}
}

func BenchmarkScan(b *testing.B) {
	e := benchEngine(b)
	const limit = 100
	for _, c := range []struct {
		name string
		at   ts.Timestamp
	}{
		// The newest versions: NextPrefix skips 9 older versions per key.
		{"latest", Latest},
		// Every key's oldest version: a seek past 9 newer versions per key.
		{"oldest", 10},
	} {
		b.Run(fmt.Sprintf("versions=%d/limit=%d/at=%s", benchVersions, limit, c.name), func(b *testing.B) {
			b.SetBytes(int64(limit * (len(benchKey(0)) + 64))) // keys and values returned
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				prefix := fmt.Appendf(nil, "user/%03d/", i%10)
				kvs, more, err := Scan(e.DB(), benchBucket, prefix, nil, c.at, limit, 0)
				if err != nil || len(kvs) != limit || !more {
					b.Fatalf("Scan(%q) = %d keys, more=%t, %v", prefix, len(kvs), more, err)
				}
				sinkKVs = kvs
				i++
			}
		})
	}
}
