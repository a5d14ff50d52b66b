package bench

import (
	"fmt"
	"strings"
)

// Sizes shared by every target, so that all of them do the same work.
const (
	// KeySpace is how many keys the key-value workloads spread over.
	KeySpace = 10000
	// ValueSize is the size of every value written, in bytes.
	ValueSize = 128
	// InitialBalance is every account's balance when a transfer run starts.
	InitialBalance = 1000
	// MaxAmount bounds one transfer: 1..MaxAmount units, never more than
	// the source account holds.
	MaxAmount = 50
)

// Kind is what the operations of a workload do.
type Kind int

const (
	// KindKV mixes Gets and Puts of random keys (ReadFraction of them
	// Gets). The latency is the operation's.
	KindKV Kind = iota + 1
	// KindLock acquires and releases a named lock; one cycle is one
	// operation and the latency is the acquire's.
	KindLock
	// KindTransfer moves an amount between two distinct random accounts
	// under a lock (or an optimistic transaction) that holds both; the
	// latency is the committed transfer's, retries included.
	KindTransfer
)

// Workload is one kind of load. Workloads are values; the table below is
// the only place they are defined, for every target.
type Workload struct {
	Name string
	Kind Kind
	// ReadFraction is the share of Gets among KindKV operations (the rest
	// are Puts).
	ReadFraction float64
	// Contended puts every client on one lock name (KindLock); otherwise
	// each client has its own.
	Contended bool
	// Accounts is the number of accounts (KindTransfer); fewer accounts
	// mean more conflicts.
	Accounts int
	// Doc is a one-line description for --help and the docs.
	Doc string
}

// workloads is the table of every workload, in the order a full run does
// them. It is never modified.
var workloads = []Workload{
	{Name: "put", Kind: KindKV, ReadFraction: 0, Doc: "Put of 128-byte values over 10k keys"},
	{Name: "get", Kind: KindKV, ReadFraction: 1, Doc: "linearizable Get of 10k preloaded keys"},
	{Name: "mixed-a", Kind: KindKV, ReadFraction: 0.5, Doc: "YCSB-A-like: 50% Get, 50% Put"},
	{Name: "mixed-b", Kind: KindKV, ReadFraction: 0.95, Doc: "YCSB-B-like: 95% Get, 5% Put"},
	{Name: "lock-uncontended", Kind: KindLock, Doc: "each client acquires and releases its own lock name (cycles/s)"},
	{Name: "lock-contended", Kind: KindLock, Contended: true, Doc: "all clients acquire and release one lock name (grants/s)"},
	{Name: "transfer-100", Kind: KindTransfer, Accounts: 100, Doc: "transfers between 2 of 100 accounts, both keys locked WRITE"},
	{Name: "transfer-10", Kind: KindTransfer, Accounts: 10, Doc: "transfers between 2 of 10 accounts (high contention)"},
}

// aliases expand to several workloads in ParseWorkloads.
var aliases = map[string][]string{
	"all":      nil, // every workload
	"mixed":    {"mixed-a", "mixed-b"},
	"lock":     {"lock-uncontended", "lock-contended"},
	"transfer": {"transfer-100", "transfer-10"},
}

// Workloads returns every workload, in run order.
func Workloads() []Workload { return append([]Workload(nil), workloads...) }

// LookupWorkload returns the workload called name.
func LookupWorkload(name string) (Workload, bool) {
	for _, w := range workloads {
		if w.Name == name {
			return w, true
		}
	}
	return Workload{}, false
}

// ParseWorkloads parses a comma-separated list of workload names and
// aliases (all, mixed, lock, transfer). The result keeps the order given,
// without duplicates.
func ParseWorkloads(list string) ([]Workload, error) {
	var out []Workload
	seen := map[string]bool{}
	add := func(w Workload) {
		if !seen[w.Name] {
			seen[w.Name] = true
			out = append(out, w)
		}
	}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if names, ok := aliases[name]; ok {
			if names == nil {
				for _, w := range workloads {
					add(w)
				}
			}
			for _, n := range names {
				w, _ := LookupWorkload(n)
				add(w)
			}
			continue
		}
		w, ok := LookupWorkload(name)
		if !ok {
			return nil, fmt.Errorf("%w: unknown workload %q (known: %s)", ErrInvalid, name, WorkloadNames())
		}
		add(w)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no workload in %q", ErrInvalid, list)
	}
	return out, nil
}

// WorkloadNames lists the workload names and aliases, comma-separated.
func WorkloadNames() string {
	var names []string
	for _, w := range workloads {
		names = append(names, w.Name)
	}
	return strings.Join(names, ", ") + " (aliases: all, mixed, lock, transfer)"
}

// Key returns the key of index i of the key space: 16 bytes, the same
// for every target.
func Key(i int) []byte { return fmt.Appendf(nil, "key-%012d", i) }

// Value returns the value every Put writes: ValueSize bytes.
func Value() []byte { return []byte(strings.Repeat("v", ValueSize)) }
