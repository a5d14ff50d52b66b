package locks

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// BenchmarkGrant measures the apply of a lock grant, as a bucket's Raft
// apply runs it (locks.ApplyCached into an indexed batch over an in-memory
// engine, with the bucket's cache; cache=off applies without one, as
// before the cache): a named lock (one NamedAcquire), and a restrictive lock on two
// keys (TxnBegin, then LockKeys taking both WRITE, when its keys are in its
// own bucket). The grants cycle through grantSlots lock names (and key
// pairs), each released since its last grant, as a busy lock service sees
// them: every grant reads a free record. The releases, and committing the
// batch every grantSlots grants, run outside the timer.
//
//	go test ./locks -run '^$' -bench Grant -count 10 > new.txt && benchstat old.txt new.txt
func BenchmarkGrant(b *testing.B) {
	for _, cached := range []bool{true, false} {
		name := "cache=on"
		if !cached {
			name = "cache=off"
		}
		b.Run(name, func(b *testing.B) { benchmarkGrant(b, cached) })
	}
}

func benchmarkGrant(b *testing.B, cached bool) {
	b.Run("lock=named", func(b *testing.B) {
		benchGrants(b, cached,
			func(slot int) []*cmdpb.Command {
				return []*cmdpb.Command{{Body: &cmdpb.Command_NamedAcquire{NamedAcquire: &cmdpb.NamedAcquire{
					Name: benchName(slot), Code: benchCode(slot), Owner: "bench", TtlMs: 15_000, Ts: 1000,
				}}}}
			},
			func(slot int) []*cmdpb.Command {
				return []*cmdpb.Command{{Body: &cmdpb.Command_NamedRelease{NamedRelease: &cmdpb.NamedRelease{
					Name: benchName(slot), Code: benchCode(slot), Ts: 2000,
				}}}}
			})
	})
	b.Run("lock=restrictive/keys=2", func(b *testing.B) {
		benchGrants(b, cached,
			func(slot int) []*cmdpb.Command {
				specs := []*cmdpb.KeySpec{
					{Key: benchKey(slot, 0), Mode: cmdpb.KeyMode_WRITE},
					{Key: benchKey(slot, 1), Mode: cmdpb.KeyMode_WRITE},
				}
				return []*cmdpb.Command{
					{Body: &cmdpb.Command_TxnBegin{TxnBegin: &cmdpb.TxnBegin{
						Name: benchName(slot), Code: benchCode(slot), Owner: "bench", TtlMs: 15_000, StartTs: 1000, Keys: specs,
					}}},
					{Body: &cmdpb.Command_LockKeys{LockKeys: &cmdpb.LockKeys{
						Name: benchName(slot), Code: benchCode(slot), Keys: specs,
					}}},
				}
			},
			func(slot int) []*cmdpb.Command {
				name, code := benchName(slot), benchCode(slot)
				return []*cmdpb.Command{
					{Body: &cmdpb.Command_TxnFinish{TxnFinish: &cmdpb.TxnFinish{Name: name, Code: code, Status: cmdpb.TxnStatus_ABORTED}}},
					{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{Name: name, Code: code, Keys: [][]byte{benchKey(slot, 0), benchKey(slot, 1)}}}},
					{Body: &cmdpb.Command_TxnResolved{TxnResolved: &cmdpb.TxnResolved{Name: name, Code: code}}},
				}
			})
	})
}

// grantSlots is how many lock names the grants cycle through.
const grantSlots = 256

func benchName(slot int) string   { return fmt.Sprintf("lock-%04d", slot) }
func benchCode(slot int) []byte   { return bytes.Repeat([]byte{byte(slot)}, 16) }
func benchKey(slot, i int) []byte { return fmt.Appendf(nil, "key-%04d-%d", slot, i) }

// benchGrants times the commands grant(slot) for slots 0, 1, ... modulo
// grantSlots (built beforehand, so only their apply is timed);
// release(slot) frees a slot again, untimed, before its next grant.
func benchGrants(b *testing.B, cached bool, grant, release func(slot int) []*cmdpb.Command) {
	e, err := mvcc.Open("", mvcc.Config{FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	grants, releases := make([][]*cmdpb.Command, grantSlots), make([][]*cmdpb.Command, grantSlots)
	for slot := range grantSlots {
		grants[slot], releases[slot] = grant(slot), release(slot)
	}
	batch := e.NewBatch()
	var cache *Cache
	if cached {
		cache = NewCache()
	}
	apply := func(cmds []*cmdpb.Command) {
		for _, cmd := range cmds {
			res, _, err := ApplyCached(batch, 0, cmd, cache)
			if err != nil {
				b.Fatal(err)
			}
			if res.Error != cmdpb.ErrorCode_OK {
				b.Fatalf("%v: %v", cmd, res)
			}
		}
	}
	// releaseAll frees slots [0, n) and commits the batch.
	releaseAll := func(n int) {
		for slot := range n {
			apply(releases[slot])
		}
		if err := batch.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
		batch.Close()
		batch = e.NewBatch()
	}
	// A first round, so that every timed grant finds a released record.
	for slot := range grantSlots {
		apply(grants[slot])
	}
	releaseAll(grantSlots)
	slot := 0
	b.ReportAllocs()
	for b.Loop() {
		apply(grants[slot])
		if slot++; slot == grantSlots {
			b.StopTimer()
			releaseAll(grantSlots)
			slot = 0
			b.StartTimer()
		}
	}
	b.StopTimer()
	releaseAll(slot)
	batch.Close()
}
