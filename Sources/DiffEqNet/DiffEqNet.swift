// The product: one import for the whole library. Each layer is its own target (see
// Package.swift and ARCHITECTURE.md); this file only re-exports them.
@_exported import DiffEqCore
@_exported import DiffEqData
@_exported import DiffEqModels
@_exported import DiffEqODE
@_exported import DiffEqTraining
@_exported import Kernels
