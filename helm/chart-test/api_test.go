package charttest

// The rendered objects against the Kubernetes API types of the oldest
// Kubernetes the chart supports (1.30: the preStop sleep action is on by
// default from there). k8s.io/api is pinned to v0.30 in go.mod for that.

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	kjson "sigs.k8s.io/json"
)

func TestManifestsAreKubernetes130Objects(t *testing.T) {
	types := map[string]func() any{
		"apps/v1 StatefulSet":                     func() any { return &appsv1.StatefulSet{} },
		"autoscaling/v2 HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
		"batch/v1 CronJob":                        func() any { return &batchv1.CronJob{} },
		"v1 ConfigMap":                            func() any { return &corev1.ConfigMap{} },
		"v1 Secret":                               func() any { return &corev1.Secret{} },
		"v1 Service":                              func() any { return &corev1.Service{} },
		"v1 ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
		"v1 PersistentVolumeClaim":                func() any { return &corev1.PersistentVolumeClaim{} },
		"networking.k8s.io/v1 Ingress":            func() any { return &networkingv1.Ingress{} },
		"policy/v1 PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
		"monitoring.coreos.com/v1 ServiceMonitor": nil, // a CRD of the Prometheus Operator, not in k8s.io/api
	}
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			for _, d := range render(t, args...) {
				head := decode[struct{ APIVersion, Kind string }](t, d)
				key := head.APIVersion + " " + head.Kind
				newObject, known := types[key]
				if !known {
					t.Errorf("%s %s: the chart renders a kind this test does not know (%s)", d.Kind, d.Metadata.Name, key)
					continue
				}
				if newObject == nil {
					continue
				}
				// Case-sensitive, no unknown or duplicate fields: what the API server's
				// strict field validation accepts.
				strict, err := kjson.UnmarshalStrict(d.json, newObject())
				if err != nil {
					t.Errorf("%s %s does not decode: %v", d.Kind, d.Metadata.Name, err)
				}
				for _, e := range strict {
					t.Errorf("%s %s: %v", d.Kind, d.Metadata.Name, e)
				}
			}
		})
	}
}
