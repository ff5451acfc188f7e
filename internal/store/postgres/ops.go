package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/sqlstore"
)

// Operator intents and the history. Intents change the cluster's rev and
// notify watchers, like every change the agents act on; events do not, as
// they are read on demand.

// SetMaintenance turns maintenance on or off for node.
func (s *Store) SetMaintenance(ctx context.Context, node string, on bool) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if on {
			_, err = tx.Exec(ctx, `INSERT INTO `+s.t.maintenance+` (cluster, node) VALUES ($1, $2) ON CONFLICT DO NOTHING`, s.o.Cluster, node)
		} else {
			_, err = tx.Exec(ctx, `DELETE FROM `+s.t.maintenance+` WHERE cluster = $1 AND node = $2`, s.o.Cluster, node)
		}
		if err != nil {
			return err
		}
		return s.changed(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("set maintenance of %s: %w", node, err)
	}
	return nil
}

// RequestSwitchover records sw until its deadline (by the database's
// clock, from now) unless an unexpired one is pending (ha.ErrBusy).
func (s *Store) RequestSwitchover(ctx context.Context, sw ha.Switchover) error {
	b, err := json.Marshal(sw)
	if err != nil {
		return err
	}
	life := sqlstore.SwitchoverLife(sw, time.Now()).Microseconds()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.t.switchover+` WHERE cluster = $1 AND expires_at <= clock_timestamp()`, s.o.Cluster); err != nil {
			return err
		}
		// A concurrent request's insert makes this one wait, then do nothing.
		tag, err := tx.Exec(ctx, `INSERT INTO `+s.t.switchover+` (cluster, id, body, expires_at)
			VALUES ($1, $2, $3, clock_timestamp() + $4::bigint * interval '1 microsecond') ON CONFLICT (cluster) DO NOTHING`,
			s.o.Cluster, sw.ID, b, life)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ha.ErrBusy
		}
		// The leader it is from must still hold the role (rolled back if
		// not); the row stays locked against a campaign until commit.
		var node *string
		var epoch *int64
		var live bool
		err = tx.QueryRow(ctx, `SELECT l.node, l.epoch,
				coalesce((SELECT s.expires_at > clock_timestamp() FROM `+s.t.sessions+` s WHERE s.id = l.session_id), false)
			FROM `+s.t.leader+` l WHERE l.cluster = $1 FOR SHARE OF l`, s.o.Cluster).Scan(&node, &epoch, &live)
		if err != nil {
			return err
		}
		var now ha.Leader
		if live && node != nil && epoch != nil {
			now = ha.Leader{Node: *node, Epoch: ha.Epoch(*epoch)}
		}
		if now != (ha.Leader{Node: sw.From, Epoch: sw.Epoch}) {
			return fmt.Errorf("%w: the switchover is from %q at epoch %d, the store has %q at epoch %d", ha.ErrStale, sw.From, sw.Epoch, now.Node, now.Epoch)
		}
		return s.changed(ctx, tx)
	})
	if err != nil && !errors.Is(err, ha.ErrBusy) && !errors.Is(err, ha.ErrStale) {
		return fmt.Errorf("request switchover: %w", err)
	}
	return err
}

// ClearSwitchover removes the pending switchover if its ID is id.
func (s *Store) ClearSwitchover(ctx context.Context, id string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM `+s.t.switchover+` WHERE cluster = $1 AND id = $2`, s.o.Cluster, id)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return s.changed(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("clear switchover: %w", err)
	}
	return nil
}

// AppendEvent adds ev to the history, pruning it now and then.
func (s *Store) AppendEvent(ctx context.Context, ev ha.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	var id int64
	if err := s.data.QueryRow(ctx, `INSERT INTO `+s.t.events+` (cluster, at_ns, body) VALUES ($1, $2, $3) RETURNING id`,
		s.o.Cluster, ev.Time.UnixNano(), b).Scan(&id); err != nil {
		return fmt.Errorf("record event: %w", err)
	}
	if id%sqlstore.PruneEvery == 0 {
		if err := s.pruneEvents(ctx); err != nil {
			return fmt.Errorf("prune the history: %w", err)
		}
	}
	return nil
}

// pruneEvents keeps the newest ha.MaxEvents events (in Events' order).
func (s *Store) pruneEvents(ctx context.Context) error {
	var at, id int64
	err := s.data.QueryRow(ctx, `SELECT at_ns, id FROM `+s.t.events+` WHERE cluster = $1
		ORDER BY at_ns DESC, id DESC OFFSET $2 LIMIT 1`, s.o.Cluster, ha.MaxEvents).Scan(&at, &id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = s.data.Exec(ctx, `DELETE FROM `+s.t.events+` WHERE cluster = $1 AND (at_ns, id) <= ($2, $3)`, s.o.Cluster, at, id)
	return err
}

// Events returns the newest limit events (all when limit <= 0), oldest first.
func (s *Store) Events(ctx context.Context, limit int) ([]ha.Event, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	rows, err := s.data.Query(ctx, `SELECT body FROM `+s.t.events+` WHERE cluster = $1 ORDER BY at_ns DESC, id DESC LIMIT $2`, s.o.Cluster, limit)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	bodies, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return sqlstore.Events(bodies), nil
}

// SetProps replaces node's properties; zero props delete them. They are
// bound to no session: a node that is down keeps its alias.
func (s *Store) SetProps(ctx context.Context, node string, p ha.NodeProps) error {
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if p.Zero() {
			_, err = tx.Exec(ctx, `DELETE FROM `+s.t.props+` WHERE cluster = $1 AND node = $2`, s.o.Cluster, node)
		} else {
			_, err = tx.Exec(ctx, `INSERT INTO `+s.t.props+` (cluster, node, props) VALUES ($1, $2, $3)
				ON CONFLICT (cluster, node) DO UPDATE SET props = EXCLUDED.props`, s.o.Cluster, node, body)
		}
		if err != nil {
			return err
		}
		return s.changed(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("set the properties of %s: %w", node, err)
	}
	return nil
}

var _ ha.Properties = (*Store)(nil)
