// Package redundancy judges whether a cluster still has the redundancy it
// was built with: one active node, every other node ready to take over, and
// a store quorum that can still lose a member. It is a pure function of
// what the status shows, shared by `haven status`, the agent's metrics, the
// dashboard and the event history.
package redundancy

import (
	"fmt"

	"github.com/haven-ha/haven/internal/ha"
)

// State is the cluster's redundancy, worst last.
type State string

const (
	OK       State = "ok"        // one active, every other node an eligible standby, quorum can lose a member
	Degraded State = "degraded"  // still serving, but one more fault may stop it
	NoActive State = "no-active" // no node is active: clients are not served
)

// Node is what the judgement needs of one configured node.
type Node struct {
	Name     string
	Role     ha.Role
	Eligible bool
	Witness  bool
	Why      string // why it is not eligible, if it says
}

// Input is the cluster as one agent sees it.
type Input struct {
	Active string // the leader's node name; "" when none
	Nodes  []Node
	// Members are the store's voting members with their health; nil when
	// unknown or the store is not embedded etcd.
	Members []ha.Member
}

// Report is the judgement, as status, metrics and the dashboard show it.
type Report struct {
	State State `json:"state"`
	// Standbys counts the nodes ready to take over; WantStandbys the
	// nodes that should be (every node but the active and the witnesses).
	Standbys     int `json:"standbys"`
	WantStandbys int `json:"want_standbys"`
	// Store members: how many, how many answer, how many a quorum needs
	// (all 0 when unknown).
	Members        int      `json:"members,omitempty"`
	HealthyMembers int      `json:"healthy_members,omitempty"`
	Quorum         int      `json:"quorum,omitempty"`
	Reasons        []string `json:"reasons,omitempty"`
}

// Assess judges in.
func Assess(in Input) Report {
	r := Report{State: OK}
	active := ""
	for _, n := range in.Nodes {
		if n.Role == ha.RoleActive && (in.Active == "" || n.Name == in.Active) {
			active = n.Name
		}
	}
	for _, n := range in.Nodes {
		if n.Witness || n.Name == active {
			continue
		}
		r.WantStandbys++
		switch {
		case n.Role == ha.RoleStandby && n.Eligible:
			r.Standbys++
		case n.Role == ha.RoleStandby:
			why := n.Why
			if why == "" {
				why = "not eligible"
			}
			r.Reasons = append(r.Reasons, fmt.Sprintf("%s cannot take over: %s", n.Name, why))
		default:
			r.Reasons = append(r.Reasons, fmt.Sprintf("%s cannot take over: it is %s", n.Name, n.Role))
		}
	}
	if r.Standbys < r.WantStandbys {
		r.State = Degraded
	}
	if len(in.Members) > 0 {
		r.Members = len(in.Members)
		r.Quorum = len(in.Members)/2 + 1
		for _, m := range in.Members {
			if m.Healthy {
				r.HealthyMembers++
			}
		}
		switch {
		case r.HealthyMembers < r.Quorum:
			r.State = Degraded
			r.Reasons = append(r.Reasons, fmt.Sprintf("store quorum lost: %d of %d members answer, %d needed", r.HealthyMembers, r.Members, r.Quorum))
		case r.Members > 1 && r.HealthyMembers == r.Quorum:
			r.State = Degraded
			r.Reasons = append(r.Reasons, fmt.Sprintf("store quorum at its minimum: %d of %d members answer; one more loss stops elections", r.HealthyMembers, r.Members))
		}
	}
	if active == "" {
		r.State = NoActive
		r.Reasons = append([]string{"no node is active: clients are not served"}, r.Reasons...)
	}
	return r
}
