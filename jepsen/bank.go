package jepsen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/opencluster/opencluster/rpc/client"
)

// bank moves money between accounts under restrictive locks (both
// accounts WRITE, in strict or snapshot mode) and reads every account at
// once in three ways. Transfers sleep between their two writes, so a read
// that could see provisional writes would see half a transfer.
type bank struct {
	restrictor // and its cfg, the run's
	keys       [][]byte
	// snapshots[w] holds recent snapshot versions worker w read, for
	// at-version reads; only worker w touches it.
	snapshots [][]uint64
}

// maxRememberedSnapshots bounds bank.snapshots per worker.
const maxRememberedSnapshots = 16

func newBank(cfg *Config) workload {
	b := &bank{restrictor: restrictor{cfg: cfg, prefix: "jepsen/bank/lock"}, snapshots: make([][]uint64, cfg.Concurrency)}
	for a := range cfg.Accounts {
		b.keys = append(b.keys, fmt.Appendf(nil, "jepsen/bank/account/%d", a))
	}
	return b
}

// Setup writes every opening balance in one transaction and records them
// as the init operation the checker takes the total from.
func (b *bank) Setup(ctx context.Context, p *process) error {
	balances := make([]int64, len(b.keys))
	var specs []client.KeySpec
	for a, k := range b.keys {
		balances[a] = b.cfg.Balance
		specs = append(specs, client.Write(k))
	}
	inv := p.invoke(fInit, "", bankArgs{Balances: balances})
	err := p.Client.Txn(ctx, "jepsen/bank/init", specs, func(tx *client.Tx) error {
		for _, k := range b.keys {
			if err := tx.Put(ctx, k, strconv.AppendInt(nil, b.cfg.Balance, 10)); err != nil {
				return err
			}
		}
		return nil
	}, client.TTL(b.cfg.LockTTL))
	p.complete(inv, outcome(err), nil, err)
	if err != nil {
		return fmt.Errorf("%w: bank accounts: %w", ErrSetup, err)
	}
	return nil
}

func (b *bank) Step(ctx context.Context, p *process) {
	if p.Rand.IntN(2) == 0 {
		b.transfer(ctx, p)
		return
	}
	snaps := b.snapshots[p.Worker]
	switch x := p.Rand.IntN(4); {
	case x == 0 && len(snaps) > 0:
		b.read(ctx, p, bankArgs{Mode: readAtVersion, Version: snaps[p.Rand.IntN(len(snaps))]})
	case x == 1:
		b.lockedRead(ctx, p)
	default:
		b.read(ctx, p, bankArgs{Mode: readLatest})
	}
}

// Final reads every account until a read succeeds or ctx ends.
func (b *bank) Final(ctx context.Context, p *process) {
	for ctx.Err() == nil {
		if b.read(ctx, p, bankArgs{Mode: readLatest, Final: true}) {
			return
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

// transfer moves a random amount between two random accounts. It is
// recorded fail whenever Commit was never sent (the writes stay
// provisional and are discarded), info only when Commit's outcome is
// unknown.
func (b *bank) transfer(ctx context.Context, p *process) {
	n := len(b.keys)
	from := p.Rand.IntN(n)
	to := (from + 1 + p.Rand.IntN(n-1)) % n
	amount := 1 + p.Rand.Int64N(5)
	snapshot := p.Rand.IntN(2) == 0
	pause := time.Duration(p.Rand.Int64N(int64(10 * time.Millisecond)))
	inv := p.invoke(fTransfer, "", bankArgs{From: from, To: to, Amount: amount, Snapshot: snapshot})

	opts := []client.RestrictOption{client.Write(b.keys[from]), client.Write(b.keys[to])}
	if snapshot {
		opts = append(opts, client.Snapshot())
	}
	tx, err := b.restrict(ctx, p, opts...)
	if err != nil {
		p.complete(inv, Fail, nil, err)
		return
	}
	if err := b.moveUnderLock(ctx, p, tx, from, to, amount, pause); err != nil {
		b.abort(ctx, p, tx)
		p.complete(inv, Fail, nil, err)
		return
	}
	version, err := b.commit(ctx, p, tx)
	p.complete(inv, outcome(err), bankResult{Version: version}, err)
}

// moveUnderLock reads both balances and writes the new ones (kept in the
// Tx until Commit), pausing between the two writes.
func (b *bank) moveUnderLock(ctx context.Context, p *process, tx *client.Tx, from, to int, amount int64, pause time.Duration) error {
	ctx, cancel := p.opContext(ctx, b.cfg.LockWait)
	defer cancel()
	balance := func(a int) (int64, error) {
		kv, err := tx.Get(ctx, b.keys[a])
		if err != nil {
			return 0, err
		}
		v, err := strconv.ParseInt(string(kv.Value), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: account %d holds %q", errGarbage, a, kv.Value)
		}
		return v, nil
	}
	fromBalance, err := balance(from)
	if err != nil {
		return err
	}
	toBalance, err := balance(to)
	if err != nil {
		return err
	}
	if fromBalance < amount {
		return errInsufficientFunds
	}
	if err := tx.Put(ctx, b.keys[from], strconv.AppendInt(nil, fromBalance-amount, 10)); err != nil {
		return err
	}
	sleep(ctx, pause)
	if err := tx.Put(ctx, b.keys[to], strconv.AppendInt(nil, toBalance+amount, 10)); err != nil {
		return err
	}
	return nil
}

// read reads every account with one BatchGet (at a fresh snapshot, or at
// args.Version) and reports whether it succeeded.
func (b *bank) read(ctx context.Context, p *process, args bankArgs) bool {
	ctx, cancel := p.opContext(ctx, b.cfg.LockWait)
	defer cancel()
	inv := p.invoke(fBalances, "", args)
	opts := []client.ReadOption{client.WithReadWait(b.cfg.LockWait)}
	if args.Version != 0 {
		opts = append(opts, client.AtVersion(args.Version))
	}
	r, err := p.Client.BatchGet(ctx, b.keys, opts...)
	if err != nil {
		p.complete(inv, Fail, nil, err)
		return false
	}
	res := bankResult{Version: r.Version, Balances: map[int]int64{}}
	for a, item := range r.Items {
		if item.Found {
			b.parseBalance(&res, a, item.Value)
		}
	}
	if args.Mode == readLatest {
		s := append(b.snapshots[p.Worker], r.Version)
		b.snapshots[p.Worker] = s[max(0, len(s)-maxRememberedSnapshots):]
	}
	p.complete(inv, OK, res, nil)
	return true
}

// lockedRead reads every account under a restrictive lock that holds
// them all READ, then aborts it (it wrote nothing).
func (b *bank) lockedRead(ctx context.Context, p *process) {
	inv := p.invoke(fBalances, "", bankArgs{Mode: readLocked})
	opts := make([]client.RestrictOption, 0, len(b.keys))
	for _, k := range b.keys {
		opts = append(opts, client.Read(k))
	}
	tx, err := b.restrict(ctx, p, opts...)
	if err != nil {
		p.complete(inv, Fail, nil, err)
		return
	}
	defer b.abort(ctx, p, tx)
	gctx, cancel := p.opContext(ctx, b.cfg.LockWait)
	defer cancel()
	res := bankResult{Version: tx.StartVersion(), Balances: map[int]int64{}}
	for a, k := range b.keys {
		kv, err := tx.Get(gctx, k)
		switch {
		case err == nil:
			b.parseBalance(&res, a, kv.Value)
		case errors.Is(err, client.ErrNotFound):
			// Missing: the checker reports it.
		default:
			p.complete(inv, Fail, nil, err)
			return
		}
	}
	p.complete(inv, OK, res, nil)
}

// parseBalance adds account a's value to res, as a balance or as garbage.
func (b *bank) parseBalance(res *bankResult, a int, value []byte) {
	v, err := strconv.ParseInt(string(value), 10, 64)
	if err != nil {
		if res.Garbage == nil {
			res.Garbage = map[int]string{}
		}
		res.Garbage[a] = string(value)
		return
	}
	res.Balances[a] = v
}
