package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/e2e/e2etest"
	"github.com/haven-ha/haven/internal/ha"
)

// The dashboard's test users. The hashes are made at the lowest bcrypt cost
// so that logins stay fast on a loaded machine.
const (
	operatorPassword = "alice-password-1"
	viewerPassword   = "victor-password-1"
)

func dashboardYAML(t *testing.T) string {
	t.Helper()
	hash := func(p string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	return fmt.Sprintf("dashboard:\n  users:\n    - {name: alice, role: operator, password_hash: %q}\n    - {name: victor, role: viewer, password_hash: %q}\n",
		hash(operatorPassword), hash(viewerPassword))
}

// chromiumPath finds Debian's chromium; scripts/test installs it. The
// browser tests fail without it rather than skip, unless
// HAVEN_SKIP_BROWSER=1 says so explicitly.
func chromiumPath(t *testing.T) string {
	for _, p := range []string{os.Getenv("HAVEN_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if os.Getenv("HAVEN_SKIP_BROWSER") == "1" {
		t.Skip("no chromium and HAVEN_SKIP_BROWSER=1")
	}
	t.Fatal("chromium not found: install it (apt-get install chromium; ./scripts/test does) or point HAVEN_CHROMIUM at it")
	return ""
}

// newBrowser starts a headless chromium for the test and returns a tab.
// JavaScript exceptions in the page fail the test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		// The test cluster's CA is not in chromium's store: the dashboard
		// is HTTPS with a certificate of the test's own CA.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first call starts the browser and ties it to its context, so it
	// gets the tab's own context, not one with a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	go func() {
		for ev, err := range chromedp.Events(ctx, runtime.ExceptionThrown) {
			if err != nil {
				return
			}
			t.Errorf("JavaScript exception in the dashboard: %s", describeException(ev.ExceptionDetails))
		}
	}()
	return ctx
}

func describeException(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "?"
	}
	msg := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		msg += " " + d.Exception.Description
	}
	return fmt.Sprintf("%s (line %d)", msg, d.LineNumber)
}

// browse runs actions with a deadline, failing the test with what was
// being done.
func browse(t *testing.T, ctx context.Context, d time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(cctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// until polls a JavaScript condition in the page until it is true.
func until(t *testing.T, ctx context.Context, d time.Duration, what, js string) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, d+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(cctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(d))); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("waiting %s for %s: %v\n---- the page ----\n%s", d, what, err, page)
	}
}

func evalJS[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(cctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(cctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func roleIs(node string, role ha.Role) string {
	return fmt.Sprintf(`(document.querySelector('#nodes-body tr[data-node=%q]') || {dataset: {}}).dataset.role === %q`, node, role)
}

// press focuses the element and presses Enter on it: the keyboard path.
func press(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	until(t, ctx, 10*time.Second, sel+" present", fmt.Sprintf(`!!document.querySelector(%q)`, sel))
	evalJS[bool](t, ctx, fmt.Sprintf(`(() => { document.querySelector(%q).focus(); return true })()`, sel))
	browse(t, ctx, 10*time.Second, "press Enter on "+sel, chromedp.KeyEvent("\r"))
}

// confirmWith types the password into the confirmation dialog and submits.
func confirmWith(t *testing.T, ctx context.Context, password string) {
	t.Helper()
	browse(t, ctx, 10*time.Second, "confirm dialog",
		chromedp.WaitVisible(chromedp.CSS("#confirm-password")),
		chromedp.SendKeys(chromedp.CSS("#confirm-password"), password+"\r"),
	)
}

func login(t *testing.T, ctx context.Context, user, password string) {
	t.Helper()
	browse(t, ctx, 15*time.Second, "log in as "+user, chromedp.WaitVisible(chromedp.CSS("#login-user")))
	evalJS[bool](t, ctx, `(() => { document.querySelector('#login-user').value = ''; return true })()`)
	browse(t, ctx, 15*time.Second, "log in as "+user,
		chromedp.SendKeys(chromedp.CSS("#login-user"), user),
		chromedp.SendKeys(chromedp.CSS("#login-password"), password+"\r"), // Enter submits: the keyboard path
	)
}

// TestDashboardInBrowser drives the dashboard of a real three-node cluster
// in chromium: log in, see the nodes, switch over and watch the new active
// appear without a reload, see a failover, toggle maintenance, download a
// standby's log from another node, see each standby's replicated-folder
// state in the active's details, and check what viewers and forged
// requests are refused.
func TestDashboardInBrowser(t *testing.T) {
	t.Parallel()
	art := e2etest.ArtifactsDir(t)
	sites := map[string]string{"n1": "dc1", "n2": "dc1", "n3": "dc2 east"}
	// Every node replicates the folder "rec", kept at recDir/<node>.
	recDir := t.TempDir()
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := os.Mkdir(filepath.Join(recDir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	top := dashboardYAML(t) + fmt.Sprintf("sync: {folders: [{name: rec, path: %q}]}\n", filepath.Join(recDir, "${HAVEN_NODE}"))
	c := newCluster(t, clusterOpts{top: top, sites: sites})
	c.WaitActive(startTimeout)
	c.waitHealthy(30 * time.Second)
	ctx := newBrowser(t)
	dash := c.Nodes[0] // the dashboard is served by n1 throughout
	base := c.API.BaseURL(dash.API)

	// / redirects to the dashboard, which asks for a login; the cursor is in
	// the user name field.
	browse(t, ctx, 30*time.Second, "open the dashboard",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
	)
	until(t, ctx, 5*time.Second, "focus on the user name", `document.activeElement && document.activeElement.id === 'login-user'`)

	// A wrong password is refused.
	login(t, ctx, "alice", "not-her-password")
	until(t, ctx, 10*time.Second, "the login error", `document.querySelector('#login-error').textContent.includes('Wrong user name or password')`)
	screenshot(t, ctx, art, "01-wrong-password")
	if evalJS[bool](t, ctx, `!document.querySelector('#app-view').hidden`) {
		t.Fatal("the dashboard opened after a wrong password")
	}

	// Log in: three nodes, one active.
	login(t, ctx, "alice", operatorPassword)
	until(t, ctx, 15*time.Second, "three nodes listed", `document.querySelectorAll('#nodes-body tr[data-node]').length === 3`)
	until(t, ctx, 15*time.Second, "one node shown active", `document.querySelectorAll('#nodes-body tr[data-role=active]').length === 1`)
	active, _ := c.WaitActive(10 * time.Second)
	if !evalJS[bool](t, ctx, roleIs(active, ha.RoleActive)) {
		until(t, ctx, 10*time.Second, active+" shown active", roleIs(active, ha.RoleActive))
	}
	for _, n := range c.Nodes {
		if !evalJS[bool](t, ctx, fmt.Sprintf(`!!document.querySelector('#nodes-body tr[data-node=%q] .pid').textContent.match(/\d+/)`, n.Name)) {
			t.Errorf("%s shows no service pid", n.Name)
		}
		if got := evalJS[string](t, ctx, fmt.Sprintf(`document.querySelector('#nodes-body tr[data-node=%q] .site').textContent`, n.Name)); got != sites[n.Name] {
			t.Errorf("%s's site shows as %q, want %q", n.Name, got, sites[n.Name])
		}
	}
	checkActiveBanner(t, ctx, c, dash.Name, active)
	checkAccessibility(t, ctx)
	screenshot(t, ctx, art, "02-overview")

	// Switch over to a standby from the cluster actions; the page must show
	// the new active without being reloaded.
	evalJS[bool](t, ctx, `(() => { window.__notReloaded = true; return true })()`)
	var target string
	for try := 1; ; try++ {
		for _, n := range c.Nodes {
			if n.Name != active {
				target = n.Name
				break
			}
		}
		until(t, ctx, 10*time.Second, target+" offered as a target", fmt.Sprintf(`[...document.querySelectorAll('#switchover-target option')].some(o => o.value === %q)`, target))
		evalJS[bool](t, ctx, fmt.Sprintf(`(() => { document.querySelector('#switchover-target').value = %q; document.querySelector('#toast').textContent = ''; return true })()`, target))
		press(t, ctx, "#switchover-submit")
		confirmWith(t, ctx, operatorPassword)
		until(t, ctx, 20*time.Second, "the switchover's outcome", fmt.Sprintf(`%s || document.querySelector('#toast').textContent.startsWith('Failed')`, roleIs(target, ha.RoleActive)))
		msg := evalJS[string](t, ctx, `document.querySelector('#toast').textContent`)
		if !strings.HasPrefix(msg, "Failed") {
			break
		}
		// The agent can demote a node that has just won the election when a
		// watch snapshot older than its campaign arrives (a known race in the
		// agent, not in the dashboard); the page then shows what really
		// happened. Try again from the new state.
		if try == 3 || !strings.Contains(msg, "did not become active") {
			t.Fatalf("switchover through the dashboard: %s", msg)
		}
		t.Logf("switchover %d to %s did not stick (%s); retrying", try, target, msg)
		active, _ = c.WaitActive(15 * time.Second)
		c.waitHealthy(30 * time.Second)
		until(t, ctx, 10*time.Second, active+" shown active", roleIs(active, ha.RoleActive))
	}
	until(t, ctx, 15*time.Second, target+" shown active", roleIs(target, ha.RoleActive))
	until(t, ctx, 15*time.Second, active+" shown standby", roleIs(active, ha.RoleStandby))
	if !evalJS[bool](t, ctx, `window.__notReloaded === true`) {
		t.Fatal("the page reloaded to show the switchover")
	}
	until(t, ctx, 10*time.Second, "the switchover in the timeline", `[...document.querySelectorAll('#timeline li[data-kind=switchover]')].length > 0`)
	until(t, ctx, 5*time.Second, "the change announced", fmt.Sprintf(`document.querySelector('#live').textContent.includes(%q)`, target+" is now active"))
	checkActiveBanner(t, ctx, c, dash.Name, target)
	screenshot(t, ctx, art, "03-after-switchover")
	if now, _ := c.WaitActive(10 * time.Second); now != target {
		t.Fatalf("the cluster's active is %s after the dashboard's switchover to %s", now, target)
	}
	c.waitHealthy(30 * time.Second)

	// A failover (the active's service killed) shows on the page within a
	// second or so of the cluster seeing it.
	v, _ := c.NodeView(target, target)
	killed := time.Now()
	if err := syscall.Kill(v.ServicePID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, 10*time.Second, "another node shown active", fmt.Sprintf(`[...document.querySelectorAll('#nodes-body tr[data-role=active]')].some(r => r.dataset.node !== %q)`, target))
	t.Logf("failover shown on the dashboard %s after the service was killed", time.Since(killed).Round(time.Millisecond))
	failedOverTo, _ := c.WaitActive(10 * time.Second)
	c.waitHealthy(30 * time.Second)

	// Maintenance on and off for a standby, from its row, with the keyboard.
	var standby string
	for _, n := range c.Nodes {
		if n.Name != failedOverTo {
			standby = n.Name
			break
		}
	}
	until(t, ctx, 15*time.Second, standby+" shown standby", roleIs(standby, ha.RoleStandby))
	press(t, ctx, fmt.Sprintf(`[data-key=%q]`, standby+":maint-on"))
	confirmWith(t, ctx, operatorPassword)
	until(t, ctx, 15*time.Second, standby+" shown in maintenance", roleIs(standby, ha.RoleMaintenance))
	screenshot(t, ctx, art, "04-maintenance")
	press(t, ctx, fmt.Sprintf(`[data-key=%q]`, standby+":maint-off"))
	confirmWith(t, ctx, operatorPassword)
	until(t, ctx, 15*time.Second, standby+" back to standby", roleIs(standby, ha.RoleStandby))

	// A wrong password in the confirmation is refused and changes nothing.
	press(t, ctx, fmt.Sprintf(`[data-key=%q]`, standby+":maint-on"))
	confirmWith(t, ctx, "wrong-password")
	until(t, ctx, 10*time.Second, "the refusal in the dialog", `document.querySelector('#confirm-error').textContent.includes('does not match')`)
	browse(t, ctx, 10*time.Second, "cancel", chromedp.Click(chromedp.CSS("#confirm-cancel")))
	if v, _ := c.NodeView(standby, standby); v.Role == ha.RoleMaintenance {
		t.Fatal("a wrong confirmation password put the node in maintenance")
	}

	// Download the log of a standby other than the dashboard's own node: it
	// comes from that node's agent through n1.
	var remote string
	for _, n := range c.Nodes {
		if n.Name != dash.Name && n.Name != failedOverTo {
			remote = n.Name
		}
	}
	if remote == "" {
		remote = failedOverTo // n1 is the only standby: fetch the active's log instead, still remote
	}
	downloads := filepath.Join(art, "downloads")
	if err := os.MkdirAll(downloads, 0o755); err != nil {
		t.Fatal(err)
	}
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	yes := true
	browse(t, ctx, 10*time.Second, "allow downloads", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: &yes,
		})
		return err
	}))
	press(t, ctx, fmt.Sprintf(`[data-key=%q]`, remote+":log"))
	got := make(chan string, 1)
	go func() {
		for ev, err := range progress {
			if err != nil {
				close(got)
				return
			}
			if ev.State == browser.DownloadProgressStateCompleted {
				got <- ev.GUID
				return
			}
		}
	}()
	select {
	case guid, ok := <-got:
		if !ok {
			t.Fatal("download events ended")
		}
		data, err := os.ReadFile(filepath.Join(downloads, guid))
		if err != nil {
			t.Fatal(err)
		}
		_ = os.Rename(filepath.Join(downloads, guid), filepath.Join(downloads, remote+".log"))
		if !strings.Contains(string(data), "node="+remote) || !strings.Contains(string(data), "agent started") {
			t.Fatalf("the downloaded log is not %s's agent log (%d bytes):\n%s", remote, len(data), tail(string(data), 2000))
		}
		t.Logf("downloaded %d bytes of %s's log through %s", len(data), remote, dash.Name)
	case <-time.After(20 * time.Second):
		t.Fatal("the log download did not complete within 20s")
	}

	// Node details: properties, recent log, masked configuration.
	press(t, ctx, fmt.Sprintf(`[data-key=%q]`, remote+":details"))
	until(t, ctx, 15*time.Second, "the recent log", fmt.Sprintf(`document.querySelector('#detail-log').textContent.includes('node=%s')`, remote))
	evalJS[bool](t, ctx, `(() => { document.querySelector('#detail details').open = true; return true })()`)
	until(t, ctx, 10*time.Second, "the configuration", `document.querySelector('#config-text').textContent.includes('token set (hidden)')`)
	if evalJS[bool](t, ctx, fmt.Sprintf(`document.body.innerText.includes(%q) || document.body.innerText.includes('$2a$')`, testToken)) {
		t.Fatal("the page shows the API token or a password hash")
	}
	if got := evalJS[string](t, ctx, `[...document.querySelectorAll('#detail-props dt')].find(e => e.textContent === 'Site').nextElementSibling.textContent`); got != sites[remote] {
		t.Errorf("the details of %s show site %q, want %q", remote, got, sites[remote])
	}
	screenshot(t, ctx, art, "05-node-detail")
	checkSessionsLayoutText(t, ctx)

	// An alias set on n1's dashboard (with the keyboard, confirmed with the
	// password) is kept in the store: n1 shows it, and so does another
	// node's dashboard.
	alias := "east wing, rack 4"
	until(t, ctx, 5*time.Second, "the alias kept in the store", `document.querySelector('#alias-note').textContent.includes('coordination store')`)
	evalJS[bool](t, ctx, `(() => { document.querySelector('#alias-input').value = ''; document.querySelector('#alias-input').focus(); return true })()`)
	browse(t, ctx, 10*time.Second, "type the alias", chromedp.SendKeys(chromedp.CSS("#alias-input"), alias))
	press(t, ctx, "#alias-submit")
	until(t, ctx, 5*time.Second, "the dialog says every dashboard", `document.querySelector('#confirm-text').textContent.includes('every node')`)
	confirmWith(t, ctx, operatorPassword)
	aliasShown := fmt.Sprintf(`(document.querySelector('#nodes-body tr[data-node=%q] .alias') || {}).textContent === %q`, remote, alias)
	until(t, ctx, 10*time.Second, "the alias on n1's dashboard", aliasShown)
	other := c.Nodes[1] // n2's dashboard, in a second tab
	tab, closeTab := chromedp.NewContext(ctx)
	if err := chromedp.Do(tab); err != nil { // opens the tab on its own context, not one with a deadline
		t.Fatalf("open a second tab: %v", err)
	}
	browse(t, tab, 30*time.Second, "open n2's dashboard", chromedp.Navigate(c.API.BaseURL(other.API)+"/ui/"))
	login(t, tab, "alice", operatorPassword)
	until(t, tab, 15*time.Second, "the alias set on n1 shown on n2's dashboard", aliasShown)
	screenshot(t, tab, art, "06-alias-on-n2")
	closeTab()
	// Browsers do not tell ports apart for cookies: logging in on n2's
	// dashboard on the same host must not end the session on n1's.
	if code := evalJS[float64](t, ctx, `fetch('/ui/api/session').then(r => r.status)`); code != http.StatusOK {
		t.Fatalf("n1's session after logging in on n2's dashboard on the same host: HTTP %v", code)
	}
	if strings.Contains(readFileOrEmpty(filepath.Join(c.Dir, "data", dash.Name, "dashboard.json")), alias) {
		t.Error("the alias went to n1's own file, not (only) the store")
	}

	// Replicated folders: a file written into the active's copy reaches
	// both standbys, and the active's details then show each standby in
	// sync, lacking nothing.
	shipped := time.Now()
	if err := os.WriteFile(filepath.Join(recDir, failedOverTo, "shown.txt"), []byte("on the dashboard"), 0o644); err != nil {
		t.Fatal(err)
	}
	press(t, ctx, fmt.Sprintf(`[data-key=%q]`, failedOverTo+":details"))
	for _, n := range c.Nodes {
		if n.Name == failedOverTo {
			continue
		}
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if b, err := os.ReadFile(filepath.Join(recDir, n.Name, "shown.txt")); err == nil && string(b) == "on the dashboard" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the file written into %s's folder is not on %s after 15s", failedOverTo, n.Name)
			}
		}
		line := fmt.Sprintf("rec \u2192 %s: in sync, lacks 0 files (0 bytes)", n.Name)
		until(t, ctx, 15*time.Second, "the active's details showing "+line, fmt.Sprintf(`[...document.querySelectorAll('#detail-props dt')].find(e => e.textContent === 'Replicated folders').nextElementSibling.textContent.includes(%q)`, line))
	}
	t.Logf("a replicated file on both standbys and shown in sync on the dashboard %s after it was written", time.Since(shipped).Round(time.Millisecond))
	screenshot(t, ctx, art, "07-folders")

	// Log out; a viewer sees the cluster but has no actions, and the server
	// refuses them even when the page is bypassed.
	press(t, ctx, "#logout")
	login(t, ctx, "victor", viewerPassword)
	until(t, ctx, 15*time.Second, "three nodes for the viewer", `document.querySelectorAll('#nodes-body tr[data-node]').length === 3`)
	if evalJS[bool](t, ctx, `document.querySelectorAll('[data-key$=":maint-on"], [data-key$=":svc-stop"]').length > 0 || document.querySelector('#switchover-form').offsetParent !== null`) {
		t.Fatal("a viewer is offered actions")
	}
	// Viewers read the status and the timeline, not the logs: no download
	// button, no log in the details, and the server refuses a direct GET.
	if evalJS[bool](t, ctx, `document.querySelectorAll('[data-key$=":log"]').length > 0`) {
		t.Fatal("a viewer is offered log downloads")
	}
	press(t, ctx, fmt.Sprintf(`[data-key=%q]`, remote+":details"))
	until(t, ctx, 10*time.Second, "the details for the viewer", `!document.querySelector('#detail').hidden && document.querySelector('#log-viewer-note').offsetParent !== null`)
	if evalJS[bool](t, ctx, `document.querySelector('#log-download').offsetParent !== null || document.querySelector('#detail-log').offsetParent !== null || document.querySelector('#alias-form').offsetParent !== null`) {
		t.Fatal("a viewer sees the log, its download link or the alias form in the details")
	}
	until(t, ctx, 10*time.Second, "the timeline for the viewer", `document.querySelectorAll('#timeline li[data-kind=switchover]').length > 0`)
	type answer struct {
		Status float64 `json:"status"`
		Body   string  `json:"body"`
	}
	refused := evalJS[answer](t, ctx, fmt.Sprintf(`(async () => { const r = await fetch('/ui/api/logs/download?node=%s'); return {status: r.status, body: await r.text()}; })()`, remote))
	if refused.Status != http.StatusForbidden || !strings.Contains(refused.Body, "needs an operator") {
		t.Fatalf("a viewer's log download: HTTP %v %s; want 403 saying an operator is needed", refused.Status, refused.Body)
	}
	code := evalJS[float64](t, ctx, fmt.Sprintf(`(async () => {
		const s = await (await fetch('/ui/api/session')).json();
		const r = await fetch('/ui/api/maintenance', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf},
			body: JSON.stringify({node: %q, on: true, password: %q})});
		return r.status;
	})()`, standby, viewerPassword))
	if code != http.StatusForbidden {
		t.Fatalf("a viewer's maintenance request: HTTP %v, want 403", code)
	}
	screenshot(t, ctx, art, "07-viewer")

	// Without the CSRF token an operator's request is refused too.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: c.HTTP.Transport}
	resp, err := hc.Post(base+"/ui/api/login", "application/json", strings.NewReader(fmt.Sprintf(`{"user":"alice","password":%q}`, operatorPassword)))
	if err != nil {
		t.Fatal(err)
	}
	var sess struct{ CSRF string }
	_ = json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || sess.CSRF == "" {
		t.Fatalf("login over HTTP: %d", resp.StatusCode)
	}
	for _, ck := range resp.Cookies() {
		if !ck.Secure {
			t.Errorf("the dashboard's cookie %s is not Secure under TLS", ck.Name)
		}
	}
	body := fmt.Sprintf(`{"node":%q,"on":true,"password":%q}`, standby, operatorPassword)
	for _, tc := range []struct {
		name, token string
	}{{"no CSRF token", ""}, {"a wrong CSRF token", "x" + sess.CSRF}} {
		req, _ := http.NewRequest(http.MethodPost, base+"/ui/api/maintenance", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if tc.token != "" {
			req.Header.Set("X-CSRF-Token", tc.token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("maintenance with %s: HTTP %d, want 403", tc.name, resp.StatusCode)
		}
	}
	if v, _ := c.NodeView(standby, standby); v.Role == ha.RoleMaintenance {
		t.Fatal("a refused request put the node in maintenance")
	}

	// Every login and action is in the dashboard node's audit log.
	audit, err := os.ReadFile(filepath.Join(c.Dir, "data", dash.Name, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(audit)), "\n") {
		var e api.AuditEntry
		if json.Unmarshal([]byte(line), &e) == nil {
			seen[fmt.Sprintf("%s %d", e.Action, e.Status)] = true
		}
	}
	for _, want := range []string{"dashboard login 401", "dashboard login 200", "dashboard switchover 200", "dashboard maintenance 200", "dashboard maintenance 403", "dashboard download logs 200", "dashboard download logs 403", "dashboard alias 200"} {
		if !seen[want] {
			t.Errorf("the audit log lacks %q:\n%s", want, audit)
		}
	}
	if strings.Contains(string(audit), operatorPassword) || strings.Contains(string(audit), "wrong-password") {
		t.Error("the audit log contains a password")
	}
}

// checkActiveBanner checks that the overview names the active node and,
// unless the dashboard runs on it, links to its dashboard.
func checkActiveBanner(t *testing.T, ctx context.Context, c *Cluster, self, active string) {
	t.Helper()
	until(t, ctx, 10*time.Second, "the banner naming "+active, fmt.Sprintf(`document.querySelector('#active-banner').textContent.startsWith('Active: ' + %q)`, active))
	if active == self {
		if !evalJS[bool](t, ctx, `document.querySelector('#active-banner').textContent.includes('this dashboard runs on it') && !document.querySelector('#active-banner a')`) {
			t.Error("the banner does not say this dashboard runs on the active node")
		}
		return
	}
	href := evalJS[string](t, ctx, fmt.Sprintf(`(document.querySelector('#active-banner a.active-link[data-node=%q]') || {}).href || ''`, active))
	if want := c.URL(active) + "/ui/"; href != want {
		t.Errorf("the link to the active's dashboard is %q, want %q", href, want)
	}
}

func readFileOrEmpty(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// checkAccessibility checks the basics: every form control has a label,
// the live region is announced, and text has at least 4.5:1 contrast
// against its background.
func checkAccessibility(t *testing.T, ctx context.Context) {
	t.Helper()
	unlabelled := evalJS[[]string](t, ctx, `[...document.querySelectorAll('input, select')].filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id || e.name)`)
	if len(unlabelled) > 0 {
		t.Errorf("form controls without a label: %v", unlabelled)
	}
	if !evalJS[bool](t, ctx, `document.querySelector('#live').getAttribute('aria-live') === 'polite' && document.querySelector('#live').getAttribute('role') === 'status'`) {
		t.Error("the live region is not announced")
	}
	low := evalJS[[]string](t, ctx, `(() => {
		const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
		const lum = ([r, g, b]) => { const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
		const bg = (e) => { for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3); } return [255, 255, 255]; };
		const out = [];
		for (const e of document.querySelectorAll('h1, h2, th, td, .badge, button, .button, label, .why, .muted, .live')) {
			if (!e.offsetParent || !e.textContent.trim()) continue;
			const a = lum(rgb(getComputedStyle(e).color).slice(0, 3)), b = lum(bg(e));
			const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
			if (ratio < 4.5) out.push(e.tagName + '.' + e.className + ' "' + e.textContent.trim().slice(0, 20) + '" ' + ratio.toFixed(2));
		}
		return out;
	})()`)
	if len(low) > 0 {
		t.Errorf("text below 4.5:1 contrast: %v", low)
	}
}

// checkSessionsLayoutText: the node details' "Sessions layout" row. This
// cluster runs no session store, so the row says "-"; the page's own
// formatter is then given records of a packed store, of one waiting for a
// node to be upgraded, and of a node from before the packed layout.
func checkSessionsLayoutText(t *testing.T, ctx context.Context) {
	t.Helper()
	if got := evalJS[string](t, ctx, `[...document.querySelectorAll('#detail-props dt')].find(e => e.textContent === 'Sessions layout').nextElementSibling.textContent`); got != "-" {
		t.Errorf("the details' sessions layout of a node without a session store: %q, want -", got)
	}
	for _, tc := range []struct{ record, want string }{
		{`{keys: 12, bytes: 3400, listen: 'x', writable: true, layout: 'packed', layouts: ['keys', 'packed'], log: {layout: 'packed', log_entries: 12, log_bytes: 4096, snapshot_keys: 300, snapshot_bytes: 65536, snapshot_at: serverNow() - 90000, compactions: 2}, warning: 'node n3 (version 1.4.0) cannot read the packed layout'}`,
			"packed: log 12 entries (4096 bytes), snapshot 300 keys (65536 bytes) 1 min 30 s old, 2 compactions; WARNING: node n3 (version 1.4.0) cannot read the packed layout"},
		{`{keys: 1, bytes: 10, listen: 'x', layout: 'keys', layouts: ['keys', 'packed'], waiting: 'waiting for node n3 (no status record: down?) to run a version that reads the packed layout'}`,
			"one key per session; waiting for node n3 (no status record: down?) to run a version that reads the packed layout"},
		{`{keys: 1, bytes: 10, listen: 'x'}`, "one key per session"},
	} {
		if got := evalJS[string](t, ctx, "sessionsLayoutText("+tc.record+")"); got != tc.want {
			t.Errorf("sessions layout of %s:\n got %q\nwant %q", tc.record, got, tc.want)
		}
	}
}
