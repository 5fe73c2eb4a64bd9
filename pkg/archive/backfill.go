package archive

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sync/errgroup"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// Progress follows a long operation. Add may be called from several goroutines.
type Progress interface {
	Start(total int64)
	Add(n int)
	Finish()
}

// BackfillReport is the outcome of Backfill.
type BackfillReport struct {
	From, To time.Time
	// Total is the count of the range when the backfill started; Read the documents read.
	Total, Read int64
	// Inserted counts new rows; the others were archived already.
	Inserted int64
	Duration time.Duration
}

// Backfill archives every event with @timestamp in [from, to) that Elasticsearch holds when it
// starts, independently of the checkpoints (the feed still archives what arrives meanwhile).
// It is idempotent: ids already in PostgreSQL are skipped, so it can be rerun after a failure.
// Pages are read from one point-in-time snapshot while up to Options.Writers transactions write.
func (a *Archiver) Backfill(ctx context.Context, from, to time.Time, p Progress) (*BackfillReport, error) {
	from, to = truncate(from), truncate(to)
	if !from.Before(to) {
		return nil, fmt.Errorf("backfill: --from %s must be before --to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	r := event.Range{From: from, To: to}
	rep := &BackfillReport{From: from, To: to}
	start := time.Now()
	total, err := a.es.CountRange(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("backfill: %w", err)
	}
	rep.Total = total
	if p == nil {
		p = nopProgress{}
	}
	p.Start(total)
	defer p.Finish()

	var read, inserted atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	pages := make(chan []event.Event, a.writers)
	for range a.writers {
		g.Go(func() error {
			for rows := range pages {
				res, err := a.pg.CopyEvents(gctx, pgstore.OriginBackfill, rows)
				if err != nil {
					return err
				}
				inserted.Add(res.Inserted)
				a.metrics.rows.WithLabelValues("backfill").Add(float64(res.Inserted))
				a.metrics.copyBytes.Add(float64(res.Bytes))
				p.Add(len(rows))
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(pages)
		return a.es.ScanRange(gctx, r, a.cfg.BatchSize, func(rows []event.Event) error {
			for _, e := range rows {
				if err := storable(e); err != nil {
					return err
				}
			}
			read.Add(int64(len(rows)))
			select {
			case pages <- rows:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	err = g.Wait()
	rep.Read, rep.Inserted, rep.Duration = read.Load(), inserted.Load(), time.Since(start)
	if err != nil {
		return rep, fmt.Errorf("backfill: %w", err)
	}
	return rep, nil
}

type nopProgress struct{}

func (nopProgress) Start(int64) {}
func (nopProgress) Add(int)     {}
func (nopProgress) Finish()     {}

// NewBar is a terminal progress bar: rows, rows/s and ETA.
func NewBar(w io.Writer, description string) Progress { return &barProgress{w: w, desc: description} }

type barProgress struct {
	w    io.Writer
	desc string
	bar  *progressbar.ProgressBar
}

func (b *barProgress) Start(total int64) {
	b.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription(b.desc),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionFullWidth(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(b.w) }),
	)
}

func (b *barProgress) Add(n int) { _ = b.bar.Add(n) }

func (b *barProgress) Finish() { _ = b.bar.Finish() }

// NewLogProgress logs the progress every interval (for logs, not terminals).
func NewLogProgress(logger *slog.Logger, what string, every time.Duration) Progress {
	return &logProgress{logger: logger, what: what, every: every}
}

type logProgress struct {
	logger *slog.Logger
	what   string
	every  time.Duration
	total  int64
	done   atomic.Int64
	start  time.Time
	stop   chan struct{}
	wg     sync.WaitGroup
}

func (l *logProgress) Start(total int64) {
	l.total, l.start, l.stop = total, time.Now(), make(chan struct{})
	l.logger.Info(l.what+" started", "total_rows", total)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(l.every)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.log(l.what + " progress")
			}
		}
	}()
}

func (l *logProgress) log(msg string) {
	done := l.done.Load()
	elapsed := time.Since(l.start)
	rate := float64(done) / max(elapsed.Seconds(), 1e-9)
	attrs := []any{"rows", done, "total_rows", l.total, "rows_per_second", int64(rate), "elapsed", elapsed.Round(time.Second).String()}
	if rate > 0 && l.total > done {
		attrs = append(attrs, "eta", (time.Duration(float64(l.total-done)/rate) * time.Second).Round(time.Second).String())
	}
	l.logger.Info(msg, attrs...)
}

func (l *logProgress) Add(n int) { l.done.Add(int64(n)) }

func (l *logProgress) Finish() {
	if l.stop == nil {
		return
	}
	close(l.stop)
	l.wg.Wait()
	l.log(l.what + " finished")
}
