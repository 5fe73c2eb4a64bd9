package testenv

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPrivateServices proves the machinery other suites rely on for fault tests: a private
// Elasticsearch node and a private PostgreSQL cluster start, stop and start again.
func TestPrivateServices(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		pg := StartPG(t)
		ctx := Context(t, time.Minute)
		query := func() error {
			c, err := pgx.Connect(ctx, pg.URL())
			if err != nil {
				return err
			}
			defer c.Close(ctx)
			var one int
			return c.QueryRow(ctx, "SELECT 1").Scan(&one)
		}
		if err := query(); err != nil {
			t.Fatal(err)
		}
		pg.Stop(t, true)
		if err := query(); err == nil {
			t.Fatal("query succeeded with the cluster stopped")
		}
		pg.Start(t)
		if err := query(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("elasticsearch", func(t *testing.T) {
		t.Parallel()
		c := StartES(t, 1, "256m")
		n := c.Nodes[0]
		get := func() (string, error) {
			res, err := (&http.Client{Timeout: 5 * time.Second}).Get(n.URL() + "/_cluster/health")
			if err != nil {
				return "", err
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return string(b), nil
		}
		if body, err := get(); err != nil || !strings.Contains(body, "spillway-test") {
			t.Fatalf("health: %v %s", err, body)
		}
		n.Kill(t)
		if _, err := get(); err == nil || n.Running() {
			t.Fatal("node answers after kill")
		}
		n.Start(t)
		if err := waitES(n.URL(), time.Minute); err != nil {
			t.Fatal(err)
		}
	})
}
