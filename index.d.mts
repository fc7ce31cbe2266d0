// Typings of the ESM entry (`index.mjs`): the same factory as `index.d.ts`, as the default export.
import expressPgSession = require('./index.js')

export type Options = expressPgSession.Options
export type ConnectionConfig = expressPgSession.ConnectionConfig
export type Columns = expressPgSession.Columns
export type UserSession = expressPgSession.UserSession
export type ExtraColumnValue = expressPgSession.ExtraColumnValue
export type ExtraColumnResult = expressPgSession.ExtraColumnResult
export type DestroyUserSessionsOptions = expressPgSession.DestroyUserSessionsOptions
export type SslOption = expressPgSession.SslOption
export type PGStore = expressPgSession.PGStore
export type PGStoreConstructor = expressPgSession.PGStoreConstructor
export type ErrorCode = expressPgSession.ErrorCode
export type StoreStatsResult = expressPgSession.StoreStatsResult

export default expressPgSession
