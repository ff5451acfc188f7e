package cli

import (
	"context"
	"log/slog"
	"reflect"
	"strings"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/reload"
)

// logLevel is the level of this process's log; a SIGHUP may change it.
var logLevel slog.LevelVar

// reloadOnHUP installs the process's one SIGHUP handler (package reload)
// until ctx ends and returns its set, to which the node and the proxy add
// their TLS reloads. It re-reads the config file on every SIGHUP, so that a
// reload (systemd's ExecReload, a logrotate script) never kills a haven
// process: without it Go's default for SIGHUP is to exit, and an active
// agent that exits without resigning costs a failover. log.level takes
// effect at once. Any other change is logged as needing a restart: haven
// does not change timings, membership, the store, checks or the service
// under a running agent. A file that does not load changes nothing.
func reloadOnHUP(ctx context.Context, running *config.Config, log *slog.Logger) *reload.Set {
	hup := &reload.Set{}
	hup.Add(func() {
		next, err := config.Load(running.Path)
		if err != nil {
			log.Error("SIGHUP: the config file does not load; nothing changed", "err", err)
			return
		}
		logLevel.Set(next.Log.Level.Slog())
		if changed := restartNeeded(running, next); len(changed) > 0 {
			log.Warn("SIGHUP: config re-read; log.level applied, other changes wait for a restart of this process",
				"changed", strings.Join(changed, ", "),
				"how", "restart the agents one at a time; on the active, run `haven switchover` first")
		} else {
			log.Info("SIGHUP: config re-read", "log_level", logLevel.Level().String())
		}
	})
	hup.OnSignal(ctx)
	return hup
}

// restartNeeded names the config sections that differ between running and
// next, other than log.level (which a reload applies). Where things stand
// in the file (the Line fields kept for messages) is not a change: a new
// comment at the top must not read as a changed store or node list.
func restartNeeded(running, next *config.Config) []string {
	a, b := *running, *next
	a.Log.Level, b.Log.Level = "", ""
	a.Path, b.Path = "", ""
	a.Warnings, b.Warnings = nil, nil // follow from the settings compared
	a.AgentErrors, b.AgentErrors = nil, nil
	var changed []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		if !sameSetting(va.Field(i), vb.Field(i)) {
			changed = append(changed, va.Type().Field(i).Name)
		}
	}
	return changed
}

// sameSetting is reflect.DeepEqual for config values, except that int
// fields named Line or ...Line (positions in the file) are not compared.
func sameSetting(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Struct:
		for i := range a.NumField() {
			if !a.Type().Field(i).IsExported() && a.CanInterface() {
				// A value type such as netip.Prefix: compare it whole.
				return reflect.DeepEqual(a.Interface(), b.Interface())
			}
		}
		for i := range a.NumField() {
			f := a.Type().Field(i)
			if strings.HasSuffix(f.Name, "Line") && f.Type.Kind() == reflect.Int {
				continue
			}
			if !sameSetting(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !sameSetting(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameSetting(a.Elem(), b.Elem())
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}
