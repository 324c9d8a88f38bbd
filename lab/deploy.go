package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// deployPlan is a burst of simultaneous deployments: Deployers clients at
// once, each writing Objects large objects one after the other, retrying
// each until it is accepted (1 s doubling to 8 s), as CD tools do.
type deployPlan struct {
	Deployers   int
	Objects     int // per deployer
	ObjectBytes int
}

func (p deployPlan) total() int64 {
	return int64(p.Deployers) * int64(p.Objects) * int64(p.ObjectBytes)
}

func (p deployPlan) String() string {
	return fmt.Sprintf("%d deployers at once, %d objects of %d KiB each (%s in all)", p.Deployers, p.Objects, p.ObjectBytes>>10, mib(p.total()))
}

// deployResult counts what the burst did.
type deployResult struct {
	accepted, retries atomic.Int64
}

// deploy runs the plan with write, one goroutine per deployer, until every
// object is accepted or ctx ends; done is closed then.
func deploy(ctx context.Context, p deployPlan, write func(ctx context.Context, deployer, object int, payload string) error) (*deployResult, <-chan struct{}) {
	res := &deployResult{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for d := range p.Deployers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seed [32]byte
			seed[0], seed[1] = byte(d), byte(d>>8)
			rng := rand.NewChaCha8(seed)
			raw := make([]byte, p.ObjectBytes*3/4)
			for o := range p.Objects {
				_, _ = rng.Read(raw) // never fails
				payload := base64.StdEncoding.EncodeToString(raw)
				backoff := time.Second
				for {
					err := write(ctx, d, o, payload)
					if err == nil {
						res.accepted.Add(1)
						break
					}
					if ctx.Err() != nil {
						return
					}
					res.retries.Add(1)
					select {
					case <-ctx.Done():
						return
					case <-time.After(backoff):
					}
					backoff = min(2*backoff, 8*time.Second)
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	return res, done
}

// helmUserAgent is what the cluster's deployers send: Helm's.
const helmUserAgent = "Helm/3.22.0"

// configMapWriter writes each deployment's rendered release as a
// ConfigMap in ns, through base (the gateway), one client per deployer.
func configMapWriter(base *rest.Config, ns string, deployers int) (func(ctx context.Context, deployer, object int, payload string) error, error) {
	clients := make([]kubernetes.Interface, deployers)
	for i := range clients {
		cfg := rest.CopyConfig(base)
		cfg.UserAgent = helmUserAgent
		cfg.Timeout = 30 * time.Second
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		clients[i] = c
	}
	return func(ctx context.Context, d, o int, payload string) error {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("release-%03d-%03d", d, o), Labels: map[string]string{"owner": "helm", "name": fmt.Sprintf("app-%03d", d)}},
			Data:       map[string]string{"release": payload},
		}
		_, err := clients[d].CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil // accepted by an earlier try whose answer was lost
		}
		return err
	}, nil
}

// deployerUserAgent is what the provider's own deployers send.
const deployerUserAgent = "provider-deployer/1.0"

// regionalWriter posts each deployment to the regional API through its
// gateway, spread over the region's clusters.
func regionalWriter(gateway string, clusters []string) func(ctx context.Context, deployer, object int, payload string) error {
	client := &http.Client{Timeout: 30 * time.Second}
	return func(ctx context.Context, d, o int, payload string) error {
		body, err := json.Marshal(map[string]string{
			"name":      fmt.Sprintf("app-%03d-%03d", d, o),
			"cluster":   clusters[(d+o)%len(clusters)],
			"manifests": "# {{cluster}}\n" + payload,
		})
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(gateway, "/")+"/v1/deployments", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", deployerUserAgent)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("regional API: %s", resp.Status)
		}
		return nil
	}
}
