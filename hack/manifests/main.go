// Command manifests writes every file generated from rules/*.yml,
// dashboards/json and the Helm chart: the chart's and the mixin's copies of
// the rule files and dashboards, and the plain manifests of deploy/. It is
// `make manifests`; deploy's tests fail while any of them is stale.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"

	"github.com/cascade-sre/cascade/deploy"
)

func main() {
	helm := flag.String("helm", "helm", "the helm binary (v3)")
	root := flag.String("root", ".", "the repository's root")
	flag.Parse()
	if err := run(*root, *helm); err != nil {
		fmt.Fprintln(os.Stderr, "manifests:", err)
		os.Exit(1)
	}
}

func run(root, helm string) error {
	if _, err := exec.LookPath(helm); err != nil {
		return fmt.Errorf("helm v3 not found (%w): `make deps` builds it into .tools/bin", err)
	}
	files, err := deploy.Generated(root, helm)
	if err != nil {
		return err
	}
	stale, err := deploy.Stale(root, files)
	if err != nil {
		return err
	}
	if err := deploy.Write(root, files); err != nil {
		return err
	}
	for _, path := range stale {
		fmt.Println("updated", path)
	}
	return nil
}
