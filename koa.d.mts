// Typings of the ESM entry (`koa.mjs`): the same factory as `koa.d.ts`, as the default export.
import koaPgSession = require('./koa.js')

export type Options = koaPgSession.Options
export type ConnectionConfig = koaPgSession.ConnectionConfig
export type Columns = koaPgSession.Columns
export type KoaSessionData = koaPgSession.KoaSessionData
export type UserSession = koaPgSession.UserSession
export type DestroyUserSessionsOptions = koaPgSession.DestroyUserSessionsOptions
export type KoaPGStore = koaPgSession.KoaPGStore
export type KoaPGStoreConstructor = koaPgSession.KoaPGStoreConstructor
export type ErrorCode = koaPgSession.ErrorCode
export type StoreStatsResult = koaPgSession.StoreStatsResult

export default koaPgSession
