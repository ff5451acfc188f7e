package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// Operator intents and the history. Intents change the cluster's rev and
// notify watchers, like every change the agents act on; events do not, as
// they are read on demand.

// SetMaintenance turns maintenance on or off for node.
func (s *Store) SetMaintenance(ctx context.Context, node string, on bool) error {
	err := inTx(ctx, s.o.DB, func(tx *sql.Tx) error {
		var err error
		if on {
			_, err = s.insertNew(ctx, tx, `INSERT INTO `+s.t.Maintenance+` (cluster, node, since) VALUES (?, ?, `+s.d.Now()+`)`, s.o.Cluster, node)
		} else {
			_, err = tx.ExecContext(ctx, s.q(`DELETE FROM `+s.t.Maintenance+` WHERE cluster = ? AND node = ?`), s.o.Cluster, node)
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
// clock, from now) unless an unexpired one is pending (ha.ErrBusy), and
// only while the leader it is from holds the role at its epoch
// (ha.ErrStale).
func (s *Store) RequestSwitchover(ctx context.Context, sw ha.Switchover) error {
	b, err := json.Marshal(sw)
	if err != nil {
		return err
	}
	life := SwitchoverLife(sw, time.Now()).Microseconds()
	err = inTx(ctx, s.o.DB, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+s.t.Switchover+` WHERE cluster = ? AND expires_at <= `+s.d.Now()), s.o.Cluster); err != nil {
			return err
		}
		// A concurrent request's insert makes this one wait, then insert
		// nothing.
		ok, err := s.insertNew(ctx, tx, `INSERT INTO `+s.t.Switchover+` (cluster, id, body, expires_at) VALUES (?, ?, ?, `+s.d.After("?")+`)`,
			s.o.Cluster, sw.ID, string(b), life)
		if err != nil {
			return err
		}
		if !ok {
			return ha.ErrBusy
		}
		// The leader it is from must still hold the role (rolled back if
		// not); the row stays locked against a campaign until commit.
		var node sql.NullString
		var epoch sql.NullInt64
		var live bool
		err = tx.QueryRowContext(ctx, s.q(`SELECT l.node, l.epoch,
				COALESCE((SELECT s.expires_at > `+s.d.Now()+` FROM `+s.t.Sessions+` s WHERE s.id = l.session_id), FALSE)
			FROM `+s.t.Leader+` l WHERE l.cluster = ?`+s.d.ShareLock("l")), s.o.Cluster).Scan(&node, &epoch, &live)
		if err != nil {
			return err
		}
		var now ha.Leader
		if live && node.Valid && epoch.Valid {
			now = ha.Leader{Node: node.String, Epoch: ha.Epoch(epoch.Int64)}
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
	err := inTx(ctx, s.o.DB, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+s.t.Switchover+` WHERE cluster = ? AND id = ?`), s.o.Cluster, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
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
	id, err := s.d.Insert(ctx, s.data(), s.q(`INSERT INTO `+s.t.Events+` (cluster, at_ns, body) VALUES (?, ?, ?)`),
		s.o.Cluster, ev.Time.UnixNano(), string(b))
	if err != nil {
		return fmt.Errorf("record event: %w", err)
	}
	if id%PruneEvery == 0 {
		if err := s.pruneEvents(ctx); err != nil {
			return fmt.Errorf("prune the history: %w", err)
		}
	}
	return nil
}

// pruneEvents keeps the newest ha.MaxEvents events (in Events' order).
func (s *Store) pruneEvents(ctx context.Context) error {
	var at, id int64
	err := s.data().QueryRowContext(ctx, s.q(`SELECT at_ns, id FROM `+s.t.Events+` WHERE cluster = ?
		ORDER BY at_ns DESC, id DESC LIMIT 1 OFFSET ?`), s.o.Cluster, ha.MaxEvents).Scan(&at, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = s.data().ExecContext(ctx, s.q(`DELETE FROM `+s.t.Events+` WHERE cluster = ? AND (at_ns < ? OR (at_ns = ? AND id <= ?))`), s.o.Cluster, at, at, id)
	return err
}

// Events returns the newest limit events (all when limit <= 0), oldest first.
func (s *Store) Events(ctx context.Context, limit int) ([]ha.Event, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	rows, err := s.data().QueryContext(ctx, s.q(`SELECT body FROM `+s.t.Events+` WHERE cluster = ? ORDER BY at_ns DESC, id DESC LIMIT ?`), s.o.Cluster, limit)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	var bodies [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		bodies = append(bodies, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return Events(bodies), nil
}

// SetProps replaces node's properties; zero props delete them. They are
// bound to no session: a node that is down keeps its alias.
func (s *Store) SetProps(ctx context.Context, node string, p ha.NodeProps) error {
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	err = inTx(ctx, s.o.DB, func(tx *sql.Tx) error {
		if p.Zero() {
			_, err = tx.ExecContext(ctx, s.q(`DELETE FROM `+s.t.Props+` WHERE cluster = ? AND node = ?`), s.o.Cluster, node)
		} else {
			_, err = tx.ExecContext(ctx, s.q(`INSERT INTO `+s.t.Props+` (cluster, node, props) VALUES (?, ?, ?)`+
				s.d.Upsert([]string{"cluster", "node"}, []string{"props"})), s.o.Cluster, node, string(body))
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
