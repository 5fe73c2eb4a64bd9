// Package deploy has no code, only tests: they keep the deployment files honest. The files at the
// repository root (docker-compose.yml, Dockerfile, Procfile, app.json) and the dashboards in
// mappings/kibana and mappings/grafana are checked against the code they describe — the
// configuration keys pkg/config knows, the binaries under cmd/, the index template and the
// metrics the services register — so that a renamed key, binary, field or metric fails a test
// instead of a deployment.
package deploy
