import { randomBytes } from 'node:crypto';

/** A webhook delivery's id, made by the store that writes the delivery (both stores make them alike). */
export const newDeliveryId = (): string => `whd_${randomBytes(12).toString('base64url')}`;
