package main

// The container init dispatch (libcontainer re-executes berth as
// "berth init" for every container it starts). It lives in its own
// package so that it runs before the initialisation of berth's heavier
// dependencies; see the package doc.
import _ "github.com/berthd/berth/runtime/embedded/containerinit"
