/* Internals shared by the policy's files. */
#ifndef MAMORI_POLICY_INT_H
#define MAMORI_POLICY_INT_H

#include "mamori/policy.h"

/*
 * The counters of sensor in c, added on first use. Sensors past
 * MM_POLICY_COUNT_SLOTS - 1 share the last slot (sensor UINT32_MAX).
 */
struct mm_policy_sensor_counts *policy_counts_slot(struct mm_policy_counts *c, uint32_t sensor);

#endif
