// Package ha holds haven's domain vocabulary: roles, epochs, the leader and
// node records kept in the coordination store, and the Coordinator interface
// that every store backend implements. It imports only the standard library so
// that the state machine, the drivers and the backends can all depend on it
// without depending on each other.
package ha

import (
	"context"
	"errors"
	"time"
)

// Role is what a node is doing in the cluster right now.
type Role string

// Roles a node reports. Only RoleActive may serve clients in active-passive
// mode, and only while its lease is valid (see machine.State.Serving).
const (
	RoleStarting  Role = "starting"  // agent up, not yet connected to the store
	RoleStandby   Role = "standby"   // waiting; may be promoted if eligible
	RolePromoting Role = "promoting" // holds the leader key, running its promotion
	RoleActive    Role = "active"    // holds the leader key and serves
	RoleDemoting  Role = "demoting"  // giving up the active role
	RoleStopped   Role = "stopped"   // agent shut down cleanly
	RoleDown      Role = "down"      // not seen in the store (status only)
	RoleWitness   Role = "witness"   // a witness: an etcd vote and nothing else (never active)

	// Standby variants shown in status; none of them is eligible on its own.
	RoleMaintenance Role = "maintenance" // an operator excluded the node from elections
	RoleBackup      Role = "backup"      // passive-backup mode: promoted only by an operator
)

// Mode is how a cluster shares the active role (the config's mode:).
type Mode string

// Cluster modes.
const (
	ModeActivePassive Mode = "active-passive" // one active, standbys take over on their own
	ModeActiveActive  Mode = "active-active"  // every healthy node serves
	ModePassiveBackup Mode = "passive-backup" // backups never promote on their own
)

// Epoch is the fencing token: it grows with every promotion, and an action
// carrying an older epoch than the current one must be refused.
type Epoch int64

// Leader is the holder of the active role as recorded in the store. A zero
// Leader (Node == "") means nobody holds it.
type Leader struct {
	Node  string `json:"node"`
	Epoch Epoch  `json:"epoch"`
}

// None reports whether nobody holds the active role.
func (l Leader) None() bool { return l.Node == "" }

// NodeStatus is what each agent publishes about itself in the store. It is
// attached to the agent's session, so it disappears when the agent dies.
type NodeStatus struct {
	Name        string    `json:"name"`
	Site        string    `json:"site,omitempty"` // from the config: where the node is
	Role        Role      `json:"role"`
	Healthy     bool      `json:"healthy"`
	Health      string    `json:"health,omitempty"` // reason of the last health change
	Eligible    bool      `json:"eligible"`
	Why         string    `json:"why,omitempty"`     // why it is or is not eligible
	HeldBy      string    `json:"held_by,omitempty"` // the switchover intent (id) that alone keeps it from being eligible (operator.Available)
	Epoch       Epoch     `json:"epoch"`
	Since       time.Time `json:"since"`  // last role change (wall clock, for people)
	Reason      string    `json:"reason"` // reason of the last role change
	AgentPID    int       `json:"agent_pid"`
	ServicePID  int       `json:"service_pid"`
	API         string    `json:"api"`
	Version     string    `json:"version"`
	StartedAt   time.Time `json:"started_at"`
	Heartbeat   time.Time `json:"heartbeat"` // when this record was written
	Failovers   int64     `json:"failovers"` // promotions of this node since it started
	LastPromote string    `json:"last_promote,omitempty"`
	Containment string    `json:"containment,omitempty"` // how the service's processes are contained: "cgroup <dir>" or "process-group (...)"
	VIP         string    `json:"vip,omitempty"`         // the virtual IP this node holds now (CIDR), if any
	// LockDelay: this node's latest promotion that waited on the
	// lock-delay (package lockdelay), if any.
	LockDelay *LockDelay `json:"lock_delay,omitempty"`
	// VIPLockDelay: the same for the VIP's own election (vip.follow:
	// proxy): its latest win that waited before adding the address.
	VIPLockDelay *LockDelay `json:"vip_lock_delay,omitempty"`
	// Sessions: the node's session store (package sessions), if it runs one.
	Sessions *SessionStats `json:"sessions,omitempty"`
	// Folders: the node's replicated folders (package folders), if any.
	Folders []FolderStats `json:"folders,omitempty"`
}

// Snapshot is the view of the cluster kept in the store: who leads, what
// every live agent last published, and the operators' standing intents.
// Rev orders snapshots (the store revision).
type Snapshot struct {
	Rev     int64
	Leader  Leader
	Nodes   map[string]NodeStatus
	Intents Intents
	// Props are the operators' node properties (see Properties), nil when
	// the store keeps none. Stores replace the map rather than change it,
	// so snapshots may share it.
	Props map[string]NodeProps
	// Tenure is the store's record of the latest campaign won and whether
	// that tenure ended cleanly (package lockdelay), zero when the store
	// keeps none.
	Tenure Tenure
	// Behind: the watch failed or stalled and is starting over, and has
	// not read the store again yet. The rest repeats the last snapshot
	// sent, which may be out of date; the next snapshot without Behind is
	// current again. A reader that only wants the data skips it. A watch
	// sends it once per restart (so at most once between two current
	// snapshots), and only after it has sent a current one.
	Behind bool
}

// Tenure records the latest epoch won and, once the leader key at that
// epoch is gone, how it ended: Ended is TenureResigned when its holder
// resigned, TenureExpired when the raft leader's primary lessor, confirmed
// by a quorum, judged its lease expired (haven's revoker); empty while it
// is held or when its key went without a record (a lease revoked by etcd's
// own tick, possibly by a stale leader's lessor: see package lockdelay).
//
// Unsettled: the holder has not yet recorded that its own predecessor
// could no longer act (a campaign writes it; the holder clears it once its
// lock-delay is over, TenureSettler): the next winner waits whatever ended
// this tenure.
type Tenure struct {
	Epoch     Epoch  `json:"epoch"`
	Node      string `json:"node"`
	Ended     string `json:"ended,omitempty"`
	Unsettled bool   `json:"unsettled,omitempty"`
}

// TenureSettler is implemented by stores that keep a tenure record: Settle
// clears Unsettled for node's tenure at epoch while it holds the key.
type TenureSettler interface {
	Settle(ctx context.Context, node string, epoch Epoch) error
}

// How a tenure ended (Tenure.Ended).
const (
	TenureResigned = "resigned"
	TenureExpired  = "expired"
)

// LockDelay is a promotion's wait on the lock-delay: at Epoch, Waited long
// (a Go duration in JSON: nanoseconds), or until Until while it waits.
type LockDelay struct {
	Epoch  Epoch         `json:"epoch"`
	Waited time.Duration `json:"waited,omitempty"`
	Until  time.Time     `json:"until,omitzero"`
	Reason string        `json:"reason"`
}

// EarlyRevoker is implemented by stores whose sessions can end before the
// renewer's validity bound: etcd, where a raft leader that was frozen and
// wakes revokes leases its stale lessor saw expire (etcd issues 12528 and
// 15247). The agent then applies a lock-delay (package lockdelay).
type EarlyRevoker interface {
	EarlyRevocation() bool
}

// PreviousTenurer is implemented by stores whose campaign reads the tenure
// record it replaces in the same transaction: PreviousTenure is that record
// for the campaign that won epoch (false if unknown, e.g. a later campaign
// won since). It is the one record sure to be about the key the winner
// replaced; the watch may have coalesced a key won and lost meanwhile.
type PreviousTenurer interface {
	PreviousTenure(epoch Epoch) (Tenure, bool)
}

// Intents are what operators asked for and the cluster must honour until
// withdrawn: maintenance flags and a pending switchover or promotion.
type Intents struct {
	Maintenance map[string]bool `json:"maintenance,omitempty"`
	Switchover  *Switchover     `json:"switchover,omitempty"`
}

// Switchover is a planned hand-over of the active role. The active at epoch
// From/Epoch demotes and resigns; only To may campaign until Deadline, so
// no other standby races the chosen target.
type Switchover struct {
	ID        string    `json:"id"`
	From      string    `json:"from,omitempty"` // empty for a promotion with no active
	Epoch     Epoch     `json:"epoch,omitempty"`
	To        string    `json:"to"`
	Promote   bool      `json:"promote,omitempty"` // passive-backup: lets a backup campaign
	Reason    string    `json:"reason"`
	Requested time.Time `json:"requested"`
	Deadline  time.Time `json:"deadline"` // wall clock; after it the intent is void
}

// Event is one entry of the cluster's history.
type Event struct {
	Time     time.Time     `json:"time"`
	Node     string        `json:"node"`
	Kind     string        `json:"kind"` // role, health, switchover, maintenance, service, membership, audit, node, failover
	Epoch    Epoch         `json:"epoch,omitempty"`
	From     string        `json:"from,omitempty"`
	To       string        `json:"to,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	Duration time.Duration `json:"duration,omitempty"` // e.g. time spent in the previous role, or traffic held
	Who      string        `json:"who,omitempty"`      // for operator actions
}

// Operations is what the operator commands need from the store beyond
// coordination: standing intents and the event history. A backend that
// does not implement it supports automatic failover only.
type Operations interface {
	// SetMaintenance turns maintenance on or off for node.
	SetMaintenance(ctx context.Context, node string, on bool) error
	// RequestSwitchover records sw unless another unexpired one is pending
	// (ErrBusy), or, in the same transaction, the active role is not held
	// by sw.From at sw.Epoch (vacant for From ""): then ErrStale, since
	// the caller decided on a stale view of the cluster.
	RequestSwitchover(ctx context.Context, sw Switchover) error
	// ClearSwitchover removes the pending switchover if its ID is id.
	ClearSwitchover(ctx context.Context, id string) error
	// AppendEvent adds ev to the history.
	AppendEvent(ctx context.Context, ev Event) error
	// Events returns the newest limit events, oldest first.
	Events(ctx context.Context, limit int) ([]Event, error)
}

// MaxEvents bounds the history every store keeps: older events are pruned.
const MaxEvents = 2000

// FencedData is the service's shared state, guarded by the active role:
// every read and write is checked against the leader record in the same
// store transaction, so a node that lost the role cannot touch it.
type FencedData interface {
	// FencedPut writes value at key if node holds the active role at
	// epoch. It returns the revision at which the value was committed, and
	// whether this was a repeat of a write with the same non-empty id that
	// had committed already (then nothing is written again). A write
	// refused by the fence returns ErrNotLeader and changed nothing; any
	// other error leaves the outcome unknown.
	FencedPut(ctx context.Context, node string, epoch Epoch, key, value, id string) (rev int64, repeat bool, err error)
	// FencedGet reads key if node holds the active role at epoch
	// (ErrNotLeader otherwise).
	FencedGet(ctx context.Context, node string, epoch Epoch, key string) (value string, found bool, rev int64, err error)
}

// Store is everything the agent needs from its backend: coordination,
// the operators' intents and history, and the service's fenced data.
type Store interface {
	Coordinator
	Operations
	FencedData
}

// ErrBusy: another operation of the same kind is in progress.
var ErrBusy = errors.New("another switchover is in progress")

// ErrStale: a switchover was asked from a leader (node and epoch) that no
// longer holds the role in the store: the caller's view is stale; it should
// look again and retry.
var ErrStale = errors.New("stale view of the active node")

// Errors that callers act on.
var (
	// ErrTaken: the active role is held by another node.
	ErrTaken = errors.New("the active role is held by another node")
	// ErrSessionLost: the store no longer knows this agent's session (it expired).
	ErrSessionLost = errors.New("session expired in the store")
	// ErrNotLeader: a resign or fenced write carried an epoch that is not current.
	ErrNotLeader = errors.New("not the current leader (stale epoch)")
	// ErrUnconfirmed: a confirmed renewal (lease.ConfirmedRenewer) that
	// the store answered but could not prove its current primary granted;
	// it does not count (a failed renewal, not a lost session).
	ErrUnconfirmed = errors.New("renewal not confirmed, not counted")
)

// Coordinator is what the agent needs from a coordination store. Backends
// (embedded or external etcd, PostgreSQL, MySQL) implement it; the state
// machine never sees it, only the agent driver does.
//
// Timing contract: Renew must only report success once the store has extended
// the session to expire no earlier than ttl after the call began, so that the
// caller may compute a lower bound of the expiry from its own clock.
type Coordinator interface {
	// NewSession creates a fresh session (the liveness lease) with the given
	// TTL, replacing any earlier one of this agent. It returns the TTL granted.
	NewSession(ctx context.Context, ttl time.Duration) (time.Duration, error)
	// Renew extends the current session once and returns the TTL granted.
	// It returns ErrSessionLost when the session no longer exists.
	Renew(ctx context.Context) (time.Duration, error)
	// Campaign tries once to take the active role for node, bound to the
	// current session. It returns the new epoch, or ErrTaken. If node
	// already holds the role under the current session (an earlier
	// campaign committed but its answer was lost), it returns that epoch:
	// a campaign may be repeated.
	Campaign(ctx context.Context, node string) (Epoch, error)
	// Resign gives up the active role if node still holds it at epoch.
	Resign(ctx context.Context, node string, epoch Epoch) error
	// Publish writes this node's status record, bound to the session.
	Publish(ctx context.Context, st NodeStatus) error
	// Watch sends a full Snapshot at start and after every change, until ctx
	// ends. The channel is closed when the watch stops. When the watch
	// fails and starts over (or a read of a polling watch fails), it sends
	// the last snapshot again marked Behind, then a current one (not
	// Behind) once it has read the store again, changed or not.
	Watch(ctx context.Context) <-chan Snapshot
	// Close releases the session (best effort) and the connection.
	Close() error
}

// SendLatest delivers snap on out for a Watch: it replaces a snapshot the
// reader has not taken yet, so a slow reader sees the newest state, never a
// backlog. It returns false when ctx ends first.
func SendLatest(ctx context.Context, out chan Snapshot, snap Snapshot) bool {
	for {
		select {
		case out <- snap:
			return true
		case <-ctx.Done():
			return false
		default:
			select {
			case <-out:
			default:
			}
		}
	}
}

// Member is one voting member of the coordination store's own cluster.
type Member struct {
	Name    string `json:"name"`
	ID      uint64 `json:"id"`
	Peer    string `json:"peer"`
	Started bool   `json:"started"` // has joined (an added member starts false)
	Healthy bool   `json:"healthy"` // answered a status request just now
	Leader  bool   `json:"leader"`
	// The member's database (bbolt) as its status reports it: the file's
	// size, which etcd checks against its quota, the part in use, the
	// quota, and its raised alarms ("NOSPACE": every write refused). 0,
	// nil: not answered.
	DBBytes      int64    `json:"db_bytes,omitempty"`
	DBInUseBytes int64    `json:"db_in_use_bytes,omitempty"`
	DBQuotaBytes int64    `json:"db_quota_bytes,omitempty"`
	Alarms       []string `json:"alarms,omitempty"`
}

// Membership changes the store's voting members at runtime (embedded etcd).
type Membership interface {
	Members(ctx context.Context) ([]Member, error)
	AddMember(ctx context.Context, name, peer string) error
	RemoveMember(ctx context.Context, id uint64) error
}

// FolderStats is one line of a node's replicated folders (package
// folders): on the active, how far one receiver (Peer) is behind; on a
// promoted node, how many files of the old active it lacked (Lost).
type FolderStats struct {
	Folder     string `json:"folder"`
	Peer       string `json:"peer,omitempty"`
	Files      int    `json:"files"`                 // files the peer lacks
	Bytes      int64  `json:"bytes"`                 // their bytes
	OldestMS   int64  `json:"oldest_ms"`             // age of the oldest file it lacks
	OldestPath string `json:"oldest_path,omitempty"` // that file
	Behind     bool   `json:"behind,omitempty"`      // beyond max_lag
	Error      string `json:"error,omitempty"`       // the last failure talking to it
	Lost       int    `json:"lost,omitempty"`        // files lacked at this node's last promotion
}
