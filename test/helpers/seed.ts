/** The request example from shared/seed/quickrouter-tencent-vod-aigc-image.txt, verbatim. */
export const SEED_JSON = String.raw`{
    "model_name": "GEM",
    "model_version": "3.0",
    "file_infos": [
        {
            "type": "file",
            "file_id": "387702299774574677",
            "url": "",
            "text": "原始图片的描述信息"
        }
    ],
    "prompt": "convert this image to anime style",
    "negative_prompt": "blur, distorted",
    "enhance_prompt": "Enabled",
    "output_config": {
        "storage_mode": "Temporary",
        "resolution": "1080P",
        "aspect_ratio": "1:1",
        "person_generation": "AllowAdult",
        "input_compliance_check": "Enabled",
        "output_compliance_check": "Enabled"
    },
    "session_id": "image-task-67890",
    "session_context": "{\"user_id\": \"123\", \"scene\": \"profile_picture\"}",
    "tasks_priority": 10,
    "ext_info": ""
}`;

/** A fresh copy of the seed's example body (tests mutate it). */
export const seedBody = (): Record<string, unknown> => JSON.parse(SEED_JSON) as Record<string, unknown>;
