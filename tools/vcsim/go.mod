// Builds vcsim, govmomi's vSphere API simulator, from the Go module proxy.
// v0.46.3 is the last tag where vcsim lives inside the root govmomi module; later
// tags split it into a module whose go.mod replaces govmomi with a relative path.
module portable-workload/tools/vcsim

go 1.24

tool github.com/vmware/govmomi/vcsim

require (
	github.com/google/uuid v1.6.0 // indirect
	github.com/vmware/govmomi v0.46.3 // indirect
)
