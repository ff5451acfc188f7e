package etcdstore

import (
	"testing"

	"github.com/haven-ha/haven/internal/store/storetest"
)

func TestProps(t *testing.T) {
	srv := storetest.StartEtcd(t)
	storetest.RunProps(t, func(t *testing.T) storetest.Pair { return pair(t, srv.Addr) })
}
