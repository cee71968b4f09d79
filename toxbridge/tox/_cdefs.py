"""The C declarations toxbridge uses, curated from toxcore 0.2.x's <tox/tox.h> and
<tox/toxencryptsave.h>.

Only what the binding calls is declared. Enums are sequential from 0 in the
headers, as declared here; ``_lib.py`` checks the library's size constants at
load time so that a mismatched library fails loudly instead of corrupting memory.
"""

CDEF = r"""
typedef struct Tox Tox;
struct Tox_Options;

uint32_t tox_version_major(void);
uint32_t tox_version_minor(void);
uint32_t tox_version_patch(void);
bool tox_version_is_compatible(uint32_t major, uint32_t minor, uint32_t patch);
uint32_t tox_public_key_size(void);
uint32_t tox_address_size(void);
uint32_t tox_max_message_length(void);
uint32_t tox_max_custom_packet_size(void);
uint32_t tox_max_friend_request_length(void);
uint32_t tox_pass_encryption_extra_length(void);

typedef enum Tox_Err_Options_New {
    TOX_ERR_OPTIONS_NEW_OK,
    TOX_ERR_OPTIONS_NEW_MALLOC
} Tox_Err_Options_New;

typedef enum Tox_Err_New {
    TOX_ERR_NEW_OK,
    TOX_ERR_NEW_NULL,
    TOX_ERR_NEW_MALLOC,
    TOX_ERR_NEW_PORT_ALLOC,
    TOX_ERR_NEW_PROXY_BAD_TYPE,
    TOX_ERR_NEW_PROXY_BAD_HOST,
    TOX_ERR_NEW_PROXY_BAD_PORT,
    TOX_ERR_NEW_PROXY_NOT_FOUND,
    TOX_ERR_NEW_LOAD_ENCRYPTED,
    TOX_ERR_NEW_LOAD_BAD_FORMAT
} Tox_Err_New;

typedef enum Tox_Err_Bootstrap {
    TOX_ERR_BOOTSTRAP_OK,
    TOX_ERR_BOOTSTRAP_NULL,
    TOX_ERR_BOOTSTRAP_BAD_HOST,
    TOX_ERR_BOOTSTRAP_BAD_PORT
} Tox_Err_Bootstrap;

typedef enum Tox_Connection {
    TOX_CONNECTION_NONE,
    TOX_CONNECTION_TCP,
    TOX_CONNECTION_UDP
} Tox_Connection;

typedef enum Tox_Proxy_Type {
    TOX_PROXY_TYPE_NONE,
    TOX_PROXY_TYPE_HTTP,
    TOX_PROXY_TYPE_SOCKS5
} Tox_Proxy_Type;

typedef enum Tox_Savedata_Type {
    TOX_SAVEDATA_TYPE_NONE,
    TOX_SAVEDATA_TYPE_TOX_SAVE,
    TOX_SAVEDATA_TYPE_SECRET_KEY
} Tox_Savedata_Type;

typedef enum Tox_Log_Level {
    TOX_LOG_LEVEL_TRACE,
    TOX_LOG_LEVEL_DEBUG,
    TOX_LOG_LEVEL_INFO,
    TOX_LOG_LEVEL_WARNING,
    TOX_LOG_LEVEL_ERROR
} Tox_Log_Level;

typedef enum Tox_Message_Type {
    TOX_MESSAGE_TYPE_NORMAL,
    TOX_MESSAGE_TYPE_ACTION
} Tox_Message_Type;

typedef enum Tox_Err_Friend_Add {
    TOX_ERR_FRIEND_ADD_OK,
    TOX_ERR_FRIEND_ADD_NULL,
    TOX_ERR_FRIEND_ADD_TOO_LONG,
    TOX_ERR_FRIEND_ADD_NO_MESSAGE,
    TOX_ERR_FRIEND_ADD_OWN_KEY,
    TOX_ERR_FRIEND_ADD_ALREADY_SENT,
    TOX_ERR_FRIEND_ADD_BAD_CHECKSUM,
    TOX_ERR_FRIEND_ADD_SET_NEW_NOSPAM,
    TOX_ERR_FRIEND_ADD_MALLOC
} Tox_Err_Friend_Add;

typedef enum Tox_Err_Friend_Delete {
    TOX_ERR_FRIEND_DELETE_OK,
    TOX_ERR_FRIEND_DELETE_FRIEND_NOT_FOUND
} Tox_Err_Friend_Delete;

typedef enum Tox_Err_Friend_By_Public_Key {
    TOX_ERR_FRIEND_BY_PUBLIC_KEY_OK,
    TOX_ERR_FRIEND_BY_PUBLIC_KEY_NULL,
    TOX_ERR_FRIEND_BY_PUBLIC_KEY_NOT_FOUND
} Tox_Err_Friend_By_Public_Key;

typedef enum Tox_Err_Friend_Get_Public_Key {
    TOX_ERR_FRIEND_GET_PUBLIC_KEY_OK,
    TOX_ERR_FRIEND_GET_PUBLIC_KEY_FRIEND_NOT_FOUND
} Tox_Err_Friend_Get_Public_Key;

typedef enum Tox_Err_Friend_Get_Last_Online {
    TOX_ERR_FRIEND_GET_LAST_ONLINE_OK,
    TOX_ERR_FRIEND_GET_LAST_ONLINE_FRIEND_NOT_FOUND
} Tox_Err_Friend_Get_Last_Online;

typedef enum Tox_Err_Friend_Query {
    TOX_ERR_FRIEND_QUERY_OK,
    TOX_ERR_FRIEND_QUERY_NULL,
    TOX_ERR_FRIEND_QUERY_FRIEND_NOT_FOUND
} Tox_Err_Friend_Query;

typedef enum Tox_Err_Friend_Send_Message {
    TOX_ERR_FRIEND_SEND_MESSAGE_OK,
    TOX_ERR_FRIEND_SEND_MESSAGE_NULL,
    TOX_ERR_FRIEND_SEND_MESSAGE_FRIEND_NOT_FOUND,
    TOX_ERR_FRIEND_SEND_MESSAGE_FRIEND_NOT_CONNECTED,
    TOX_ERR_FRIEND_SEND_MESSAGE_SENDQ,
    TOX_ERR_FRIEND_SEND_MESSAGE_TOO_LONG,
    TOX_ERR_FRIEND_SEND_MESSAGE_EMPTY
} Tox_Err_Friend_Send_Message;

typedef enum Tox_Err_Friend_Custom_Packet {
    TOX_ERR_FRIEND_CUSTOM_PACKET_OK,
    TOX_ERR_FRIEND_CUSTOM_PACKET_NULL,
    TOX_ERR_FRIEND_CUSTOM_PACKET_FRIEND_NOT_FOUND,
    TOX_ERR_FRIEND_CUSTOM_PACKET_FRIEND_NOT_CONNECTED,
    TOX_ERR_FRIEND_CUSTOM_PACKET_INVALID,
    TOX_ERR_FRIEND_CUSTOM_PACKET_EMPTY,
    TOX_ERR_FRIEND_CUSTOM_PACKET_TOO_LONG,
    TOX_ERR_FRIEND_CUSTOM_PACKET_SENDQ
} Tox_Err_Friend_Custom_Packet;

typedef enum Tox_Err_Get_Port {
    TOX_ERR_GET_PORT_OK,
    TOX_ERR_GET_PORT_NOT_BOUND
} Tox_Err_Get_Port;

typedef enum Tox_Err_Set_Info {
    TOX_ERR_SET_INFO_OK,
    TOX_ERR_SET_INFO_NULL,
    TOX_ERR_SET_INFO_TOO_LONG
} Tox_Err_Set_Info;

typedef enum Tox_Err_Encryption {
    TOX_ERR_ENCRYPTION_OK,
    TOX_ERR_ENCRYPTION_NULL,
    TOX_ERR_ENCRYPTION_KEY_DERIVATION_FAILED,
    TOX_ERR_ENCRYPTION_FAILED
} Tox_Err_Encryption;

typedef enum Tox_Err_Decryption {
    TOX_ERR_DECRYPTION_OK,
    TOX_ERR_DECRYPTION_NULL,
    TOX_ERR_DECRYPTION_INVALID_LENGTH,
    TOX_ERR_DECRYPTION_BAD_FORMAT,
    TOX_ERR_DECRYPTION_KEY_DERIVATION_FAILED,
    TOX_ERR_DECRYPTION_FAILED
} Tox_Err_Decryption;

typedef void tox_log_cb(Tox *tox, Tox_Log_Level level, const char *file, uint32_t line,
                        const char *func, const char *message, void *user_data);

struct Tox_Options *tox_options_new(Tox_Err_Options_New *error);
void tox_options_free(struct Tox_Options *options);
void tox_options_set_ipv6_enabled(struct Tox_Options *options, bool ipv6_enabled);
void tox_options_set_udp_enabled(struct Tox_Options *options, bool udp_enabled);
void tox_options_set_local_discovery_enabled(struct Tox_Options *options, bool enabled);
void tox_options_set_hole_punching_enabled(struct Tox_Options *options, bool enabled);
void tox_options_set_proxy_type(struct Tox_Options *options, Tox_Proxy_Type type);
void tox_options_set_proxy_host(struct Tox_Options *options, const char *host);
void tox_options_set_proxy_port(struct Tox_Options *options, uint16_t port);
void tox_options_set_start_port(struct Tox_Options *options, uint16_t start_port);
void tox_options_set_end_port(struct Tox_Options *options, uint16_t end_port);
void tox_options_set_tcp_port(struct Tox_Options *options, uint16_t tcp_port);
void tox_options_set_savedata_type(struct Tox_Options *options, Tox_Savedata_Type type);
void tox_options_set_savedata_data(struct Tox_Options *options, const uint8_t *data, size_t length);
void tox_options_set_log_callback(struct Tox_Options *options, tox_log_cb *callback);

Tox *tox_new(const struct Tox_Options *options, Tox_Err_New *error);
void tox_kill(Tox *tox);
size_t tox_get_savedata_size(const Tox *tox);
void tox_get_savedata(const Tox *tox, uint8_t *savedata);

bool tox_bootstrap(Tox *tox, const char *host, uint16_t port, const uint8_t *public_key,
                   Tox_Err_Bootstrap *error);
bool tox_add_tcp_relay(Tox *tox, const char *host, uint16_t port, const uint8_t *public_key,
                       Tox_Err_Bootstrap *error);
Tox_Connection tox_self_get_connection_status(const Tox *tox);
uint32_t tox_iteration_interval(const Tox *tox);
void tox_iterate(Tox *tox, void *user_data);

void tox_self_get_address(const Tox *tox, uint8_t *address);
void tox_self_set_nospam(Tox *tox, uint32_t nospam);
uint32_t tox_self_get_nospam(const Tox *tox);
void tox_self_get_public_key(const Tox *tox, uint8_t *public_key);
void tox_self_get_dht_id(const Tox *tox, uint8_t *dht_id);
uint16_t tox_self_get_udp_port(const Tox *tox, Tox_Err_Get_Port *error);
uint16_t tox_self_get_tcp_port(const Tox *tox, Tox_Err_Get_Port *error);
bool tox_self_set_name(Tox *tox, const uint8_t *name, size_t length, Tox_Err_Set_Info *error);

uint32_t tox_friend_add(Tox *tox, const uint8_t *address, const uint8_t *message, size_t length,
                        Tox_Err_Friend_Add *error);
uint32_t tox_friend_add_norequest(Tox *tox, const uint8_t *public_key, Tox_Err_Friend_Add *error);
bool tox_friend_delete(Tox *tox, uint32_t friend_number, Tox_Err_Friend_Delete *error);
uint32_t tox_friend_by_public_key(const Tox *tox, const uint8_t *public_key,
                                  Tox_Err_Friend_By_Public_Key *error);
bool tox_friend_exists(const Tox *tox, uint32_t friend_number);
size_t tox_self_get_friend_list_size(const Tox *tox);
void tox_self_get_friend_list(const Tox *tox, uint32_t *friend_list);
bool tox_friend_get_public_key(const Tox *tox, uint32_t friend_number, uint8_t *public_key,
                               Tox_Err_Friend_Get_Public_Key *error);
uint64_t tox_friend_get_last_online(const Tox *tox, uint32_t friend_number,
                                    Tox_Err_Friend_Get_Last_Online *error);
Tox_Connection tox_friend_get_connection_status(const Tox *tox, uint32_t friend_number,
                                                Tox_Err_Friend_Query *error);

uint32_t tox_friend_send_message(Tox *tox, uint32_t friend_number, Tox_Message_Type type,
                                 const uint8_t *message, size_t length,
                                 Tox_Err_Friend_Send_Message *error);
bool tox_friend_send_lossless_packet(Tox *tox, uint32_t friend_number, const uint8_t *data,
                                     size_t length, Tox_Err_Friend_Custom_Packet *error);
bool tox_friend_send_lossy_packet(Tox *tox, uint32_t friend_number, const uint8_t *data,
                                  size_t length, Tox_Err_Friend_Custom_Packet *error);

typedef void tox_self_connection_status_cb(Tox *tox, Tox_Connection connection_status, void *user_data);
typedef void tox_friend_connection_status_cb(Tox *tox, uint32_t friend_number,
                                             Tox_Connection connection_status, void *user_data);
typedef void tox_friend_request_cb(Tox *tox, const uint8_t *public_key, const uint8_t *message,
                                   size_t length, void *user_data);
typedef void tox_friend_message_cb(Tox *tox, uint32_t friend_number, Tox_Message_Type type,
                                   const uint8_t *message, size_t length, void *user_data);
typedef void tox_friend_lossless_packet_cb(Tox *tox, uint32_t friend_number, const uint8_t *data,
                                           size_t length, void *user_data);
typedef void tox_friend_lossy_packet_cb(Tox *tox, uint32_t friend_number, const uint8_t *data,
                                        size_t length, void *user_data);
void tox_callback_self_connection_status(Tox *tox, tox_self_connection_status_cb *callback);
void tox_callback_friend_connection_status(Tox *tox, tox_friend_connection_status_cb *callback);
void tox_callback_friend_request(Tox *tox, tox_friend_request_cb *callback);
void tox_callback_friend_message(Tox *tox, tox_friend_message_cb *callback);
void tox_callback_friend_lossless_packet(Tox *tox, tox_friend_lossless_packet_cb *callback);
void tox_callback_friend_lossy_packet(Tox *tox, tox_friend_lossy_packet_cb *callback);

bool tox_pass_encrypt(const uint8_t *plaintext, size_t plaintext_len, const uint8_t *passphrase,
                      size_t passphrase_len, uint8_t *ciphertext, Tox_Err_Encryption *error);
bool tox_pass_decrypt(const uint8_t *ciphertext, size_t ciphertext_len, const uint8_t *passphrase,
                      size_t passphrase_len, uint8_t *plaintext, Tox_Err_Decryption *error);
bool tox_is_data_encrypted(const uint8_t *data);
"""
