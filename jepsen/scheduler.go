package jepsen

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// SchedulerConfig configures a Scheduler.
type SchedulerConfig struct {
	// Interval is the mean quiet time before each fault; each wait is
	// drawn uniformly from [Interval/2, 3*Interval/2).
	Interval time.Duration
	// Duration is how long each fault lasts before it is healed.
	Duration time.Duration
	// HealTimeout bounds healing a fault (restarting a killed node
	// included), also after the run's context ended.
	HealTimeout time.Duration
	Logger      *slog.Logger
}

// Scheduler injects faults one at a time: wait, inject a fault of a
// nemesis picked at random, hold it, heal it, again. Every injection and
// heal is recorded in the history as a nemesis entry.
type Scheduler struct {
	cfg     SchedulerConfig
	cluster Cluster
	nemeses []Nemesis
	rec     *Recorder
	rng     *rand.Rand

	mu struct {
		sync.Mutex
		// active is the fault being held, or nil.
		active *Fault
		// counts counts injected faults by nemesis.
		counts map[string]int
	}
}

// nemesisEvent is the value of a nemesis history entry.
type nemesisEvent struct {
	// Phase is "start" (injected) or "stop" (healed).
	Phase string `json:"phase"`
	Fault
	Error string `json:"error,omitempty"`
	// Note is what the heal found (a partition: packets dropped).
	Note string `json:"note,omitempty"`
}

// NewScheduler returns a scheduler of nemeses on c, recording into rec,
// drawing its choices from rng (which it owns from now on).
func NewScheduler(cfg SchedulerConfig, c Cluster, nemeses []Nemesis, rec *Recorder, rng *rand.Rand) *Scheduler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{cfg: cfg, cluster: c, nemeses: nemeses, rec: rec, rng: rng}
	s.mu.counts = map[string]int{}
	return s
}

// Run injects and heals faults until ctx ends, then heals the fault in
// progress and returns. It returns the first heal error: a fault it could
// not undo (a killed node that does not come back) ends the run.
func (s *Scheduler) Run(ctx context.Context) error {
	if len(s.nemeses) == 0 {
		return nil
	}
	for {
		wait := s.cfg.Interval/2 + time.Duration(s.rng.Int64N(int64(s.cfg.Interval)+1))
		sleep(ctx, wait)
		if ctx.Err() != nil {
			return nil
		}
		nem := s.nemeses[s.rng.IntN(len(s.nemeses))]
		fault, err := nem.Inject(ctx, s.cluster, s.rng)
		s.record("start", fault, err, "")
		s.setActive(&fault)
		if err != nil {
			s.cfg.Logger.Warn("jepsen: inject failed", "fault", fault.String(), "err", err)
		} else {
			sleep(ctx, s.cfg.Duration)
		}
		// Heal even after ctx ended: a run never ends with a fault in place.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.HealTimeout)
		err = nem.Heal(hctx, s.cluster, fault)
		cancel()
		note := ""
		if hn, ok := nem.(healNoter); ok {
			note = hn.HealNote()
		}
		s.record("stop", fault, err, note)
		s.setActive(nil)
		if err != nil {
			return fmt.Errorf("jepsen: heal %s: %w", fault, err)
		}
	}
}

func (s *Scheduler) record(phase string, f Fault, err error, note string) {
	ev := nemesisEvent{Phase: phase, Fault: f, Note: note}
	if err != nil {
		ev.Error = err.Error()
	}
	s.rec.Nemesis(f.Nemesis, ev)
}

func (s *Scheduler) setActive(f *Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.active = f
	if f != nil {
		s.mu.counts[f.Nemesis]++
	}
}

// Active returns the fault being held ("" if none), for progress lines.
func (s *Scheduler) Active() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.active == nil {
		return ""
	}
	return s.mu.active.String()
}

// Counts returns the faults injected so far, by nemesis.
func (s *Scheduler) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.mu.counts))
	for k, v := range s.mu.counts {
		out[k] = v
	}
	return out
}
