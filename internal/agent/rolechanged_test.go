package agent

import (
	"testing"
	"time"
)

// TestRoleChangedSignalsPromotionAndDemotion: RoleChanged's channel is
// closed when a node becomes active and when it stops being active (what
// the session store and the replicated folders wait on instead of polling
// the role).
func TestRoleChangedSignalsPromotionAndDemotion(t *testing.T) {
	t.Parallel()
	c := startMemCluster(t, 3)
	first := c.waitActive("")
	standbys := map[string]<-chan struct{}{} // taken while they are standbys
	for name, a := range c.agents {
		if name != first {
			standbys[name] = a.RoleChanged()
		}
	}
	demoted := c.agents[first].RoleChanged()
	c.stop[first]()
	select {
	case <-demoted:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s stopped and its RoleChanged channel was not closed", first)
	}
	next := c.waitActive(first)
	select {
	case <-standbys[next]:
	default:
		t.Fatalf("%s became active and its RoleChanged channel was not closed", next)
	}
	if again := c.agents[next].RoleChanged(); again == standbys[next] {
		t.Fatal("RoleChanged handed out the closed channel again")
	}
}
