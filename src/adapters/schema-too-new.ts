/**
 * The database was migrated by a newer relay. This one does not know the newer tables and constraints, and writing
 * to them (a column it does not fill, a rule it does not keep) could corrupt what the newer relay relies on, so it
 * refuses to start instead. select-store.ts turns it into the one-line configuration error naming the database.
 */
export class SchemaTooNewError extends Error {
  constructor(found: number, known: number) {
    super(`database schema is at version ${found}, newer than this relay (${known}); upgrade the relay`);
    this.name = 'SchemaTooNewError';
  }
}
